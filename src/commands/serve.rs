//! `lingma-gw serve`: resolve settings, start the pool, bind, print `listening on http://ADDR`,
//! serve until SIGTERM/SIGINT, let running answers finish within the grace period, stop the pool.
//! On a terminal a spinner counts the instances that are up while the pool starts (log lines go
//! above it); it is gone before `listening on` is printed.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::accounts::{instance_specs, parse_accounts};
use crate::cli::ServeArgs;
use crate::gateway::auth::AuthConfig;
use crate::gateway::responses::store::ResponseStore;
use crate::gateway::router;
use crate::gateway::server::{self, ConnLimits};
use crate::gateway::state::{AppState, HttpConfig};
use crate::lingma::discovery::LingmaBinary;
use crate::login::auto::AutoLogin;
use crate::metrics::Metrics;
use crate::pool::{ATTACHED_NAME, AttachConfig, Backoff, Pool, PoolConfig};
use crate::settings::{AutoLoginSettings, ServeSettings, Sources};
use crate::turn::admission::Admission;
use crate::turn::reuse::SessionCache;
use crate::turn::{Engine, EngineConfig};

use super::UsageError;
use super::progress::Ui;

pub async fn run(args: ServeArgs, sources: &Sources<'_>, ui: &Ui) -> anyhow::Result<ExitCode> {
    let s = ServeSettings::resolve(&args, sources)?;
    // Only instances the pool starts need a Lingma binary; an attached one runs already.
    let binary = if s.instances > 0 {
        Some(LingmaBinary::resolve(&s.lingma.binary).map_err(|e| UsageError(e.to_string()))?)
    } else {
        None
    };
    let accounts = match &s.accounts {
        Some(a) => Some(parse_accounts(a).map_err(|e| UsageError(e.to_string()))?),
        None => None,
    };
    let specs = if s.instances > 0 {
        instance_specs(
            accounts.as_deref(),
            s.instances,
            s.session_bundle.as_deref(),
        )
        .map_err(|e| UsageError(e.to_string()))?
    } else {
        Vec::new()
    };
    let attach = s.lingma.attach.clone().map(|spec| AttachConfig {
        name: ATTACHED_NAME.to_string(),
        spec,
        roots: s.lingma.attach_roots.clone(),
    });
    if attach.is_some() && specs.iter().any(|i| i.name == ATTACHED_NAME) {
        return Err(UsageError(format!(
            "the instance name {ATTACHED_NAME:?} is taken by the attached runtime; name the \
             accounts' instances otherwise"
        ))
        .into());
    }
    // Bundle seeds are decoded and verified now; the pool installs them into logged-out work dirs.
    let specs = super::session::prepare_seeds(specs, &s.lingma.work_dir, sources)?;
    let auto_login_settings =
        AutoLoginSettings::resolve(args.auto_login, &s.lingma.work_dir, sources)?;
    let auto_login_config = super::login::auto_login_config(
        &auto_login_settings,
        accounts.as_deref(),
        s.lingma.client.clone(),
        sources,
    )?;
    let auth = AuthConfig {
        api_keys: s.api_keys.clone(),
        admin_token: s.admin_token.clone(),
        metrics_token: s.metrics_token.clone(),
        metrics_public: s.metrics_public,
    };
    if auth.admin_falls_back_to_api_keys() {
        tracing::warn!("ADMIN_TOKEN is not set: /internal endpoints accept the client API keys");
    } else if auth.admin_is_open() {
        tracing::warn!(
            "no ADMIN_TOKEN and no API keys: /internal endpoints are open to anyone who can reach this address"
        );
    }
    // Bind before starting Lingma so a taken port fails fast, without spawning anything.
    let addr = format!("{}:{}", s.host, s.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;

    // Signals are watched from here on, so a Ctrl-C during start-up still stops Lingma in order.
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: no new requests; letting running answers finish");
        signal.cancel();
    });

    let pool = Pool::start(PoolConfig {
        binary,
        work_root: s.lingma.work_dir.clone(),
        instances: specs,
        attach,
        socket_port: s.lingma.socket_port,
        startup_timeout: s.lingma.startup_timeout,
        connections_per_instance: s.lingma.connections_per_instance,
        health_interval: s.lingma.health_interval,
        health_failures: 3,
        client: s.lingma.client.clone(),
        stop_grace: Duration::from_secs(5),
        backoff: Backoff::default(),
    })?;
    let starting = ui.spinner(starting_message(&pool, s.lingma.startup_timeout));
    let settled = pool.wait_settled(s.lingma.startup_timeout + Duration::from_secs(1));
    tokio::pin!(settled);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = &mut settled => break,
            _ = tick.tick(), if starting.is_shown() => {
                starting.set_message(starting_message(&pool, s.lingma.startup_timeout));
            }
            _ = shutdown.cancelled() => {
                starting.finish();
                pool.shutdown().await;
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    starting.finish();
    for snap in pool.snapshots() {
        tracing::info!(instance = %snap.name, state = %snap.state, user = snap.user.as_deref().unwrap_or(""), "instance started");
    }

    let hard_stop = CancellationToken::new();
    let engine = Arc::new(Engine {
        pool: pool.clone(),
        admission: Arc::new(Admission::bounded(
            s.max_in_flight,
            s.queue_timeout,
            s.max_queue,
            s.queue_memory,
        )),
        sessions: Arc::new(SessionCache::new(
            s.session_cache_max_entries,
            s.session_cache_ttl,
        )),
        metrics: Arc::new(Metrics::new()),
        auto_login: AutoLogin::new(auto_login_config, pool.clone()),
        config: EngineConfig {
            default_model: s.default_model.clone(),
            ask_mode: s.ask_mode,
            session_reuse: s.session_reuse,
            instance_wait: s.queue_timeout,
            tool_syntax: s.tool_syntax,
            tool_description_limit: s.tool_description_limit,
            keepalive: s.keepalive,
            model_map: s.model_map.clone(),
        },
        shutdown: shutdown.clone(),
        hard_stop: hard_stop.clone(),
    });
    let state = AppState {
        engine: engine.clone(),
        auth: Arc::new(auth),
        config: Arc::new(HttpConfig {
            body_limit: s.body_limit,
            body_timeout: s.body_timeout,
            replica_id: Arc::from(s.replica_id.as_str()),
            replica_header: axum::http::HeaderValue::from_str(&s.replica_id)
                .context("the replica id is not a valid header value")?,
        }),
        responses: Arc::new(ResponseStore::new(
            s.response_store_entries,
            s.response_store_ttl,
        )),
    };
    let app = router::build(state.clone());
    crate::logging::stdout_line(&format!("listening on http://{local}"));
    tracing::info!(addr = %local, instances = s.instances, attached = s.lingma.attach.is_some(), replica = %s.replica_id, "gateway listening");

    let limits = ConnLimits {
        header_timeout: s.header_timeout,
        idle_timeout: s.idle_timeout,
        write_stall_timeout: s.stream_stall_timeout,
    };
    let mut server = tokio::spawn(server::serve(listener, app, limits, shutdown.clone()));
    shutdown.cancelled().await;
    match tokio::time::timeout(s.shutdown_grace, &mut server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
        Err(_) => {
            tracing::warn!(
                grace_sec = s.shutdown_grace.as_secs_f64(),
                "grace period over; ending the remaining answers"
            );
            // Each running answer ends with an error event and stops Lingma; its connection
            // then closes by itself. The server task finishes once they all have.
            hard_stop.cancel();
            if tokio::time::timeout(Duration::from_secs(5), &mut server)
                .await
                .is_err()
            {
                server.abort();
                let _ = server.await;
            }
        }
    }
    engine.admission.close();
    // Running logins close their browsers before the instances stop.
    engine.auto_login.shutdown().await;
    pool.shutdown().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// "starting 2 Lingma instances: 1 up" for the start-up spinner.
fn starting_message(pool: &Pool, timeout: Duration) -> String {
    let snaps = pool.snapshots();
    let up = snaps.iter().filter(|s| s.state.settled()).count();
    format!(
        "starting {} Lingma instance{} (up to {} s): {up} up…",
        snaps.len(),
        if snaps.len() == 1 { "" } else { "s" },
        timeout.as_secs()
    )
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
