//! The Anthropic Messages front door through `serve --sim`, driven by the official `anthropic`
//! Python SDK (`tests/python/anthropic_client.py`): text and streams in Anthropic's event order,
//! thinking blocks, tool use (parallel, `tool_choice`, a re-asked refusal), a tool loop that keeps
//! its Lingma session under Claude Code's session header, stop sequences and max_tokens,
//! count_tokens, the model map, and every error type the SDK maps.

mod common;

use std::time::Duration;

use common::Gateway;

const KEY: &str = "sk-anthropic";

#[test]
fn anthropic_sdk_against_the_gateway() {
    common::clients::require_python(&["anthropic"]);
    let gw = Gateway::start(
        &[
            "--api-key",
            KEY,
            "--max-in-flight",
            "1",
            "--queue-timeout",
            "0",
            "--model-map",
            "claude-*haiku*=dashscope_qwen_max_latest",
        ],
        &[],
    );
    common::clients::run_python_checks("anthropic_client.py", &gw, KEY, Duration::from_secs(240));
}
