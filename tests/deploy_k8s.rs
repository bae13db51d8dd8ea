//! The Kubernetes recipe (`deploy/k8s/`), checked without a cluster by
//! `tests/python/check_k8s.py`: every document parsed and validated (strict) against the
//! Kubernetes schemas that `kubernetes-validate` ships, for the oldest and newest versions it
//! targets; then what makes the recipe work: one volume per replica holding the work dirs, the
//! replica id from the pod name, readiness on /readyz and liveness on /healthz, a termination
//! grace above lingma-gw's own, every secret from the Secret, memory requests that cover the
//! benchmark's figures, the image's user and port, the ingress hashing on the conversation
//! headers. What no test here can do is run it on a cluster: there is none on this machine.

mod common;

use std::process::Command;
use std::time::Duration;

use common::clients::{require_python, run_with_timeout};

#[test]
fn kubernetes_manifests_validate_and_fit_together() {
    require_python(&["yaml", "kubernetes_validate"]);
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cmd = Command::new("python3");
    cmd.arg(format!("{root}/tests/python/check_k8s.py"))
        .args(["--repo", root]);
    let (out, timed_out) = run_with_timeout(cmd, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        !timed_out && out.status.success(),
        "check_k8s.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("check_k8s: "))
        .unwrap_or_default();
    let counts: Vec<&str> = summary
        .trim_start_matches("check_k8s: ")
        .split_whitespace()
        .next()
        .unwrap_or("")
        .split('/')
        .collect();
    assert!(
        counts.len() == 2 && counts[0] == counts[1] && counts[0] != "0",
        "not every check passed:\n{stdout}"
    );
}
