//! The OpenAI Responses front door through `serve --sim`, driven by the official `openai` Python
//! SDK's `client.responses` (`tests/python/openai_responses.py`): create and stream with every
//! event parsed by the SDK's types, function / namespace / custom tools and hosted tools left out,
//! reasoning summaries, `previous_response_id` and a Codex-style `store: false` history both
//! continuing the same Lingma session, retrieve and delete, and errors (404, 400, a 429 worded as
//! Codex parses it, `response.failed`).

mod common;

use std::time::Duration;

use common::Gateway;

const KEY: &str = "sk-responses";

#[test]
fn openai_sdk_responses_against_the_gateway() {
    common::clients::require_python(&["openai"]);
    let gw = Gateway::start(
        &[
            "--api-key",
            KEY,
            "--max-in-flight",
            "1",
            "--queue-timeout",
            "0",
        ],
        &[],
    );
    common::clients::run_python_checks("openai_responses.py", &gw, KEY, Duration::from_secs(240));
}
