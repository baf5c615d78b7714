//! What `POST /api/plan` costs, step by step, on the 1,000-container host
//! (`ctm::synthetic::host_kdl(1000, 100, 50)`) applied to a scratch root
//! by the release binary: the editor's steady state, a no-op plan.
//!
//! `cargo bench --bench web_plan`. Each step runs alone in this process,
//! in the order a request runs them (the live files both ways: `lstat`
//! with the stat cache, as `ctm plan` does, and vouched for by inotify, as
//! `ctm serve` does), and the whole request is sent through the router
//! in-process (no sockets). Prints the median and the 90th
//! percentile of each; `wrk` against `ctm serve` gives the figures under
//! load (docs/benchmarks.md, "The web editor").

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use ctm::compile::{self, health};
use ctm::live;
use ctm::live::watch::Watcher;
use ctm::plan::Manifest;
use ctm::plan::SystemState;
use ctm::plan::{self, Inputs};
use ctm::state::{Memory, Store};
use ctm::synthetic::host_kdl;
use ctm::web::{AppState, Config};

// The allocator of the binary (src/main.rs), so that the steps cost here
// what they cost in `ctm serve`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 40;

/// Runs `step` RUNS times (after one warm-up) and prints its median and
/// 90th percentile.
fn time<T>(name: &str, mut step: impl FnMut() -> T) {
    std::hint::black_box(step());
    let mut runs: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(step());
            started.elapsed()
        })
        .collect();
    runs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<46} median {:7.2} ms   p90 {:7.2} ms",
        ms(runs[RUNS / 2]),
        ms(runs[RUNS * 9 / 10])
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would run this
    // too, so only measure when asked to.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let host = work.path().join("host.kdl");
    let root = work.path().join("root");
    let text = host_kdl(1000, 100, 50);
    std::fs::write(&host, &text).expect("write host");
    let status = Command::new(env!("CARGO_BIN_EXE_ctm"))
        .args(["apply", "host.kdl", "--yes", "--no-diff", "--root"])
        .arg(&root)
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ctm runs");
    assert!(status.success(), "ctm apply failed");
    // Files are trusted by the stat cache once their ctime is 2 s old.
    std::thread::sleep(Duration::from_millis(2100));

    let lock_path = work.path().join("host.kdl.lock");
    let lock_text = std::fs::read_to_string(&lock_path).ok();
    let check = || {
        ctm::engine::load::validate_text(&host, text.clone(), lock_path.clone(), lock_text.clone())
    };
    time("check (parse + validate)", check);
    let outcome = check();
    let validated = outcome.validated.as_ref().expect("the host is valid");
    time("compile", || compile::compile(&validated.host));
    let desired = compile::compile(&validated.host);
    time("hash the desired files (Manifest::of)", || {
        Manifest::of(&desired)
    });
    let desired_manifest = Manifest::of(&desired);
    let hashes = Memory::default();
    hashes.manifest_of(&desired);
    time("hash the desired files, unchanged ones kept", || {
        hashes.manifest_of(&desired)
    });
    time("health expectations (health::of)", || health::of(&desired));

    let disk = Store::new(&root);
    let n = disk.current().expect("state").expect("a generation");
    let memory = Store::new(&root).with_memory(Arc::new(Memory::default()));
    time("manifest, read from disk", || {
        disk.manifest(n).expect("manifest")
    });
    time("manifest, kept in memory", || {
        memory.manifest(n).expect("manifest")
    });
    // A plan records the stat cache, which the next reads.
    let cache = disk.stat_cache();
    let manifest = disk.manifest(n).expect("manifest");
    let paths = || desired.files.keys().chain(manifest.files.keys());
    if let Some(updated) = live::read(&root, paths(), &cache).expect("read").cache {
        disk.set_stat_cache(updated).expect("save the stat cache");
    }
    time("stat cache, read from disk", || disk.stat_cache());
    time("stat cache, kept in memory", || memory.stat_cache());
    let cache = disk.stat_cache();
    time("live files (stat cache warm)", || {
        live::read(&root, paths(), &cache).expect("read")
    });
    let snapshot = live::read(&root, paths(), &cache).expect("read");
    assert!(snapshot.cache.is_none(), "the stat cache is warm");
    let watcher = Watcher::new(&root, Duration::from_secs(600)).expect("inotify");
    watcher.read(paths(), &cache).expect("read");
    time("live files (inotify vouches for them)", || {
        watcher.read(paths(), &cache).expect("read")
    });
    assert_eq!(watcher.vouched(), snapshot.live.len());
    let expect = health::of(&desired).expect("health");
    let system = SystemState::default();
    time("plan (plan::plan)", || {
        plan::plan(&Inputs {
            desired: &desired,
            desired_manifest: &desired_manifest,
            expect: &expect,
            current: Some((n, &manifest)),
            live: &snapshot.live,
            system: &system,
            options: plan::Options::default(),
        })
    });

    whole_request(&host, &root, &text);
}

/// `POST /api/plan` through the router, as the editor sends it.
fn whole_request(host: &Path, root: &Path, text: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (state, _) = AppState::new(Config::new(Some(host.to_path_buf()), root.to_path_buf()))
        .expect("app state");
    let token = state.auth.token().to_string();
    let app = ctm::web::router(state);
    let body = serde_json::to_vec(&serde_json::json!({ "text": text })).expect("body");
    time("POST /api/plan, whole request in-process", || {
        runtime.block_on(async {
            let request = Request::post("/api/plan")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.clone()))
                .expect("request");
            let response = app.clone().oneshot(request).await.expect("response");
            assert_eq!(response.status(), StatusCode::OK);
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let answer: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
            assert_eq!(answer["plan"]["summary"]["change"], 0);
        })
    });
}
