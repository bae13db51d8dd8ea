//! The process pool with simulator instances: concurrent start, restart after SIGKILL, crash-loop
//! backoff, logged-out instances, clean shutdown (checked in the process table), no port collisions.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{BIN, processes_matching, signal, wait_for_async};
use lingma_gw::bundle::Seed;
use lingma_gw::lingma::WorkDir;
use lingma_gw::lingma::discovery::{InstanceFile, LingmaBinary};
use lingma_gw::lingma::{ChatRequest, ClientOptions};
use lingma_gw::pool::{
    Backoff, InstanceSpec, InstanceState, Pool, PoolConfig, PoolError, Selection,
};

fn sim_binary(env: &[(&str, &str)]) -> LingmaBinary {
    let mut all: Vec<(String, String)> = common::fast_sim_env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    LingmaBinary {
        program: BIN.into(),
        prefix_args: vec!["sim".into()],
        is_sim: true,
        env: all,
    }
}

fn config(binary: LingmaBinary, root: &Path, n: usize) -> PoolConfig {
    PoolConfig {
        binary: Some(binary),
        attach: None,
        work_root: root.to_path_buf(),
        instances: (0..n)
            .map(|i| InstanceSpec {
                name: format!("inst-{i}"),
                seed: None,
                account: None,
            })
            .collect(),
        socket_port: None,
        startup_timeout: Duration::from_secs(20),
        connections_per_instance: 2,
        health_interval: Duration::from_millis(200),
        health_failures: 3,
        client: ClientOptions {
            rpc_timeout: Duration::from_secs(5),
            ..Default::default()
        },
        stop_grace: Duration::from_secs(3),
        backoff: Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            crash_limit: 3,
            window: Duration::from_secs(30),
        },
    }
}

fn state(pool: &Pool, name: &str) -> InstanceState {
    pool.snapshots()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
        .state
}

async fn chat_ok(pool: &Pool, sel: Selection) -> String {
    let lease = pool.acquire(&sel, Duration::from_secs(5)).await.unwrap();
    let fin = lease
        .client()
        .chat(ChatRequest {
            question: "Reply with exactly: ok".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(fin.answer, "ok");
    lease.instance().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_start_concurrently_and_stop_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pool");
    // A start-up delay long enough that a sequential start would show: when the first instance
    // is ready, every child must already have been spawned.
    let pool = Pool::start(config(
        sim_binary(&[("LINGMA_SIM_STARTUP_DELAY_MS", "700")]),
        &root,
        3,
    ))
    .unwrap();
    let pids_at_first_ready = wait_for_async(Duration::from_secs(20), || async {
        let snaps = pool.snapshots();
        if snaps.iter().any(|s| s.state == InstanceState::Ready) {
            Ok(snaps.iter().filter(|s| s.pid.is_some()).count())
        } else {
            Err(snaps)
        }
    })
    .await
    .unwrap_or_else(|snaps| panic!("no instance became ready: {snaps:?}"));
    assert_eq!(pids_at_first_ready, 3, "instances must start concurrently");
    pool.wait_settled(Duration::from_secs(20)).await;
    let snaps = pool.snapshots();
    assert!(
        snaps.iter().all(|s| s.state == InstanceState::Ready),
        "{snaps:?}"
    );
    for s in &snaps {
        let f = InstanceFile::read(&WorkDir::new(&s.work_dir)).expect("instance file");
        assert_eq!(f.owner_pid, std::process::id());
        assert_eq!(Some(f.lingma_pid), s.pid);
        assert_eq!(s.models, 5);
    }
    let needle = root.to_string_lossy().to_string();
    assert_eq!(processes_matching(&needle).len(), 3);
    pool.shutdown().await;
    assert!(
        processes_matching(&needle).is_empty(),
        "no child may survive shutdown"
    );
    for s in &snaps {
        assert!(
            InstanceFile::read(&WorkDir::new(&s.work_dir)).is_none(),
            "instance file removed"
        );
    }
    assert!(
        pool.snapshots()
            .iter()
            .all(|s| s.state == InstanceState::Stopped)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_child_restarts_while_the_others_serve() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::start(config(sim_binary(&[]), dir.path(), 3)).unwrap();
    pool.wait_settled(Duration::from_secs(20)).await;
    let before = pool.snapshots();
    let victim = before[1].clone();
    signal(victim.pid.unwrap(), "KILL");
    assert!(
        pool.wait_state("inst-1", Duration::from_secs(5), |s| s
            != InstanceState::Ready)
            .await
            .unwrap()
            != InstanceState::Ready
    );
    // The other two keep answering meanwhile.
    for name in ["inst-0", "inst-2"] {
        assert_eq!(chat_ok(&pool, Selection::Named(name.into())).await, name);
    }
    let st = pool
        .wait_state("inst-1", Duration::from_secs(15), |s| {
            s == InstanceState::Ready
        })
        .await
        .unwrap();
    assert_eq!(st, InstanceState::Ready);
    let after = pool.snapshots();
    assert_ne!(after[1].pid, victim.pid);
    assert!(after[1].restarts >= 1);
    assert!(after[1].epoch > victim.epoch);
    assert_eq!(after[0].pid, before[0].pid);
    assert_eq!(after[2].pid, before[2].pid);
    assert_eq!(
        chat_ok(&pool, Selection::Named("inst-1".into())).await,
        "inst-1"
    );
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binary_that_exits_at_once_lands_in_failed_without_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-lingma");
    std::fs::write(&fake, "#!/bin/sh\necho 'cannot start' >&2\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = LingmaBinary {
        program: fake,
        prefix_args: vec![],
        is_sim: false,
        env: vec![],
    };
    let pool = Pool::start(config(bin, &dir.path().join("w"), 1)).unwrap();
    let st = pool
        .wait_state("inst-0", Duration::from_secs(10), |s| {
            s == InstanceState::Failed
        })
        .await
        .unwrap();
    assert_eq!(st, InstanceState::Failed);
    let restarts = pool.snapshots()[0].restarts;
    // The observation window of a rate (attempts per second), not a synchronisation.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = pool.snapshots()[0].restarts;
    // Failed backs off to the 2 s ceiling: at most one more attempt in that second.
    assert!(later <= restarts + 1, "busy loop: {restarts} -> {later}");
    assert!(
        pool.snapshots()[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("exited")
    );
    assert!(matches!(
        pool.acquire(&Selection::Any, Duration::from_millis(100))
            .await,
        Err(PoolError::NoInstanceReady)
    ));
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logged_out_instance_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::start(config(
        sim_binary(&[("LINGMA_SIM_LOGGED_OUT", "true")]),
        dir.path(),
        1,
    ))
    .unwrap();
    pool.wait_settled(Duration::from_secs(20)).await;
    assert_eq!(state(&pool, "inst-0"), InstanceState::NotLoggedIn);
    assert!(!pool.any_ready());
    match pool
        .acquire(&Selection::Any, Duration::from_millis(100))
        .await
    {
        Err(PoolError::NotLoggedIn { instance }) => assert_eq!(instance, "inst-0"),
        Err(e) => panic!("unexpected {e:?}"),
        Ok(_) => panic!("must not lease a logged-out instance"),
    }
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pools_on_one_machine_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    // Both pools start from the same first port: the second must skip the first's ports.
    let base = common::port_hint();
    let mut a = config(sim_binary(&[]), &dir.path().join("a"), 2);
    let mut b = config(sim_binary(&[]), &dir.path().join("b"), 2);
    a.socket_port = Some(base);
    b.socket_port = Some(base);
    let pa = Pool::start(a).unwrap();
    let pb = Pool::start(b).unwrap();
    pa.wait_settled(Duration::from_secs(30)).await;
    pb.wait_settled(Duration::from_secs(30)).await;
    for p in [&pa, &pb] {
        for name in ["inst-0", "inst-1"] {
            p.wait_state(name, Duration::from_secs(20), |s| s == InstanceState::Ready)
                .await
                .unwrap();
        }
    }
    let mut ports: Vec<u16> = pa
        .snapshots()
        .into_iter()
        .chain(pb.snapshots())
        .flat_map(|s| [s.socket_port.unwrap(), s.http_port.unwrap()])
        .collect();
    let n = ports.len();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), n, "ports must be distinct: {ports:?}");
    chat_ok(&pa, Selection::Any).await;
    chat_ok(&pb, Selection::Any).await;
    pa.shutdown().await;
    pb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn selection_affinity_least_loaded_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let pool: Arc<Pool> = Pool::start(config(sim_binary(&[]), dir.path(), 3)).unwrap();
    pool.wait_settled(Duration::from_secs(20)).await;
    let key = Selection::Affinity {
        key: "conversation-42".into(),
        strict: true,
    };
    let first = chat_ok(&pool, key.clone()).await;
    for _ in 0..5 {
        assert_eq!(chat_ok(&pool, key.clone()).await, first);
    }
    // Least loaded: with two leases held, a third lease goes to the idle instance.
    let l1 = pool
        .acquire(&Selection::Named("inst-0".into()), Duration::from_secs(1))
        .await
        .unwrap();
    let l2 = pool
        .acquire(&Selection::Named("inst-1".into()), Duration::from_secs(1))
        .await
        .unwrap();
    let l3 = pool
        .acquire(&Selection::Any, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(l3.instance(), "inst-2");
    let busy: Vec<_> = pool.snapshots().iter().map(|s| s.in_flight).collect();
    assert_eq!(busy, vec![1, 1, 1]);
    drop((l1, l2, l3));
    assert!(pool.snapshots().iter().all(|s| s.in_flight == 0));
    assert!(matches!(
        pool.acquire(&Selection::Named("nope".into()), Duration::from_millis(10))
            .await,
        Err(PoolError::UnknownInstance(_))
    ));
    // A full instance makes a strict lease wait, then time out.
    let _a = pool
        .acquire(&Selection::Named("inst-0".into()), Duration::from_secs(1))
        .await
        .unwrap();
    let _b = pool
        .acquire(&Selection::Named("inst-0".into()), Duration::from_secs(1))
        .await
        .unwrap();
    assert!(matches!(
        pool.acquire(
            &Selection::Named("inst-0".into()),
            Duration::from_millis(100)
        )
        .await,
        Err(PoolError::Busy(_))
    ));
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_work_dir_owned_by_a_live_process_is_refused_and_a_stale_one_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let wd = WorkDir::of_instance(dir.path(), "inst-0");
    std::fs::create_dir_all(wd.root()).unwrap();
    // Our parent shell is alive but is not us: the work dir is in use.
    let parent = std::os::unix::process::parent_id();
    InstanceFile {
        name: "inst-0".into(),
        owner_pid: parent,
        lingma_pid: parent,
        socket_port: 1,
        http_port: 2,
        started_at: 0,
    }
    .write(&wd)
    .unwrap();
    assert!(matches!(
        Pool::start(config(sim_binary(&[]), dir.path(), 1)),
        Err(PoolError::InUse { .. })
    ));
    // A file left by dead processes is stale and replaced.
    InstanceFile {
        name: "inst-0".into(),
        owner_pid: 999_999_999,
        lingma_pid: 999_999_998,
        socket_port: 1,
        http_port: 2,
        started_at: 0,
    }
    .write(&wd)
    .unwrap();
    let pool = Pool::start(config(sim_binary(&[]), dir.path(), 1)).unwrap();
    pool.wait_settled(Duration::from_secs(20)).await;
    assert_eq!(
        InstanceFile::read(&wd).unwrap().owner_pid,
        std::process::id()
    );
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_and_drain_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::start(config(sim_binary(&[]), dir.path(), 2)).unwrap();
    pool.wait_settled(Duration::from_secs(20)).await;
    pool.drain("inst-0").unwrap();
    pool.wait_state("inst-0", Duration::from_secs(5), |s| {
        s == InstanceState::Draining
    })
    .await
    .unwrap();
    for _ in 0..4 {
        assert_eq!(chat_ok(&pool, Selection::Any).await, "inst-1");
    }
    let pid = pool.snapshots()[0].pid;
    pool.restart("inst-0").unwrap();
    pool.wait_state("inst-0", Duration::from_secs(5), |s| {
        s != InstanceState::Draining
    })
    .await
    .unwrap();
    let st = pool
        .wait_state("inst-0", Duration::from_secs(15), |s| {
            s == InstanceState::Ready
        })
        .await
        .unwrap();
    assert_eq!(st, InstanceState::Ready);
    assert_ne!(pool.snapshots()[0].pid, pid);
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seed_dir_logs_in_a_logged_out_work_dir() {
    let dir = tempfile::tempdir().unwrap();
    // A logged-in work dir made by one simulator run serves as the seed.
    let seed = dir.path().join("seed");
    let sim = common::Sim::builder()
        .dir(&seed)
        .envs(&common::fast_sim_env())
        .start()
        .await;
    sim.stop().await;
    let mut cfg = config(
        sim_binary(&[("LINGMA_SIM_LOGGED_OUT", "true")]),
        &dir.path().join("w"),
        1,
    );
    cfg.instances[0].seed = Some(Seed::Dir(seed));
    let pool = Pool::start(cfg).unwrap();
    pool.wait_settled(Duration::from_secs(20)).await;
    assert_eq!(state(&pool, "inst-0"), InstanceState::Ready);
    pool.shutdown().await;
}
