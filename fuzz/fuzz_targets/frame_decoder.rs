//! Fuzzes the Content-Length frame decoder (`lingma_gw::lingma::frame::FrameDecoder`) with
//! arbitrary bytes fed in arbitrary pieces: it must never panic, never hand out more bytes than it
//! was given, and after an error `reset` must leave it usable. Every frame it returns must survive
//! an encode/decode round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lingma_gw::lingma::frame::{FrameDecoder, encode};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size, so one input explores many splits of the same bytes.
    let Some((&cut, wire)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut % 32) + 1;
    let mut d = FrameDecoder::new(1 << 20);
    let mut pushed = 0usize;
    let mut handed_out = 0usize;
    for piece in wire.chunks(cut) {
        d.push(piece);
        pushed += piece.len();
        loop {
            match d.next_frame() {
                Ok(Some(body)) => {
                    handed_out += body.len();
                    let mut again = FrameDecoder::new(1 << 20);
                    again.push(&encode(&body));
                    assert_eq!(
                        again.next_frame().ok().flatten().as_deref(),
                        Some(&body[..])
                    );
                    assert_eq!(again.pending(), 0);
                }
                Ok(None) => break,
                Err(_) => {
                    d.reset();
                    break;
                }
            }
        }
        assert!(handed_out + d.pending() <= pushed);
    }
});
