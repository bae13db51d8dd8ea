//! The coding agents themselves, headless, through `lingma-gw serve --sim`: Claude Code on
//! `/v1/messages`, Codex CLI on `/v1/responses`, Qwen Code on `/v1/chat/completions`. Each runs a
//! real two-step tool loop in a scratch project (the simulator plays the model: `[[tool:…]]` in the
//! prompt scripts its calls, see docs/simulator.md): the first tool writes a file, the second reads
//! it back, and the agent prints the model's final text, which quotes what the second tool
//! returned. Each test checks the real side effect, the final text, and that the follow-up turns
//! sent Lingma only the tool results in the same session.
//!
//! The CLIs are installed from npm by `scripts/setup-test-deps.sh` (pinned versions) into
//! `.agent-clients/`; a missing one fails the test with what to run.

mod common;

use std::time::Duration;

use common::Gateway;
use common::clients::{AgentSandbox, agent_cli, conversation_questions, run_with_timeout};

const KEY: &str = "sk-agents";
/// A run takes a few seconds (Qwen Code: mostly Node's start-up); this bounds a hang.
const RUN: Duration = Duration::from_secs(180);

/// The simulator's record of one agent conversation: a first question carrying the tools and the
/// history, then one small question per tool result, all in one Lingma session.
fn assert_reused(gw: &Gateway, marker: &str) {
    let (session, questions) = conversation_questions(gw, marker);
    let sizes: Vec<usize> = questions.iter().map(String::len).collect();
    assert_eq!(
        questions.len(),
        3,
        "questions in session {session}: {sizes:?}"
    );
    assert!(
        sizes[0] > 5_000,
        "the first question should carry the agent's tools: {sizes:?}"
    );
    for (i, q) in questions.iter().enumerate().skip(1) {
        assert!(
            q.starts_with("[Tool result]") && q.len() < 1_000,
            "follow-up {i} is not just the tool result ({sizes:?}):\n{q}"
        );
    }
}

fn run(name: &str, cmd: std::process::Command, gw: &Gateway) -> String {
    let (out, timed_out) = run_with_timeout(cmd, RUN);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !timed_out && out.status.success(),
        "{name} {} ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- gateway ---\n{}",
        if timed_out { "timed out" } else { "failed" },
        out.status,
        gw.stderr()
    );
    stdout
}

#[test]
fn claude_code_runs_a_tool_loop_on_the_messages_api() {
    let claude = agent_cli("claude");
    let gw = Gateway::start(&["--api-key", KEY], &[]);
    let sb = AgentSandbox::new("claude");
    let file = sb.project.join("hello.txt");
    let prompt = format!(
        "claude-loop: write the file, then show it. \
         [[tool:Write {{\"file_path\": \"{}\", \"content\": \"hello from claude\\n\"}}]] \
         [[tool:Bash {{\"command\": \"cat hello.txt\", \"description\": \"Show the file\"}}]]",
        file.display()
    );
    let mut cmd = sb.command(&claude);
    cmd.env("ANTHROPIC_BASE_URL", &gw.base)
        .env("ANTHROPIC_API_KEY", KEY)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "1")
        .args(["-p", &prompt, "--allowedTools", "Read,Write,Bash"]);
    let stdout = run("claude", cmd, &gw);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        "hello from claude\n"
    );
    assert!(
        stdout.contains("Done. The tool said: hello from claude"),
        "{stdout}"
    );
    assert_reused(&gw, "claude-loop");
}

#[test]
fn codex_runs_a_tool_loop_on_the_responses_api() {
    let codex = agent_cli("codex");
    let gw = Gateway::start(&["--api-key", KEY], &[]);
    let sb = AgentSandbox::new("codex");
    let codex_home = sb.home.join(".codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    std::fs::write(
        codex_home.join("config.toml"),
        format!(
            "model = \"gpt-5.5\"\nmodel_provider = \"lingma\"\n\n\
             [analytics]\nenabled = false\n\n[features]\nplugins = false\n\n\
             [model_providers.lingma]\nname = \"lingma-gw\"\nbase_url = \"{}/v1\"\n\
             wire_api = \"responses\"\nenv_key = \"LINGMA_GW_API_KEY\"\n\
             request_max_retries = 1\nstream_max_retries = 1\n",
            gw.base
        ),
    )
    .unwrap();
    let prompt = "codex-loop: make the file, then show it. \
                  [[tool:exec_command {\"cmd\": \"echo hello from codex > out.txt\"}]] \
                  [[tool:exec_command {\"cmd\": \"cat out.txt\"}]]";
    let mut cmd = sb.command(&codex);
    cmd.env("CODEX_HOME", &codex_home)
        .env("LINGMA_GW_API_KEY", KEY)
        .args([
            "exec",
            "--skip-git-repo-check",
            "--sandbox",
            "workspace-write",
            prompt,
        ]);
    let stdout = run("codex", cmd, &gw);
    assert_eq!(
        std::fs::read_to_string(sb.project.join("out.txt")).unwrap_or_default(),
        "hello from codex\n"
    );
    // Codex wraps a command's output (Chunk ID, exit code, ...); the model quotes all of it.
    assert!(
        stdout.contains("Done. The tool said:") && stdout.contains("hello from codex"),
        "{stdout}"
    );
    assert_reused(&gw, "codex-loop");
}

#[test]
fn qwen_code_runs_a_tool_loop_on_the_chat_api() {
    let qwen = agent_cli("qwen");
    let gw = Gateway::start(&["--api-key", KEY], &[]);
    let sb = AgentSandbox::new("qwen");
    let settings = sb.home.join(".qwen");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(
        settings.join("settings.json"),
        r#"{"privacy": {"usageStatisticsEnabled": false}, "telemetry": {"enabled": false}}"#,
    )
    .unwrap();
    let file = sb.project.join("notes.txt");
    let prompt = format!(
        "qwen-loop: write the notes, then show them. \
         [[tool:write_file {{\"file_path\": \"{}\", \"content\": \"hello from qwen\\n\"}}]] \
         [[tool:run_shell_command {{\"command\": \"cat notes.txt\"}}]]",
        file.display()
    );
    let mut cmd = sb.command(&qwen);
    cmd.env("OPENAI_BASE_URL", format!("{}/v1", gw.base))
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_MODEL", "auto")
        .env("QWEN_CODE_SUPPRESS_YOLO_WARNING", "1")
        .args(["--auth-type", "openai", "--yolo", "-p", &prompt]);
    let stdout = run("qwen", cmd, &gw);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        "hello from qwen\n"
    );
    assert!(
        stdout.contains("Done. The tool said:") && stdout.contains("hello from qwen"),
        "{stdout}"
    );
    assert_reused(&gw, "qwen-loop");
}
