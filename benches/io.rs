//! The file I/O of `compile --out`, `plan` and `apply`, on the real disk:
//! every row of the budget table of issue 12 (docs/benchmarks.md, "Files
//! on the disk"). Everything runs through the release binary against
//! directories this bench makes under `CTM_BENCH_DIR` (default
//! `/var/tmp`), which must not be a tmpfs: a tmpfs has no disk to wait
//! for, and the point is what a user waits for.
//!
//! Each measure is paired with its floor in the same run, taking turns:
//!
//! - the plain-writer floor: the same tree (directories, files with their
//!   modes, symlinks, hard links) created by a loop of `mkdir`, `write`
//!   and `symlink`, without a sync;
//! - `netplan generate --root-dir` of the same networks (500 bridges, 500
//!   GRE tunnels) as YAML, if netplan.io is installed (skipped loudly
//!   otherwise: `apt-get install netplan.io`); also its C generator alone
//!   (`/usr/lib/netplan/generate`), without the Python front end;
//! - one `lstat` per managed file, in this process, for the no-op plan;
//!   and the no-op plan for the apply after a one-container edit (the
//!   edit made and undone in turns, as many applies as plans; the files
//!   the first one writes are counted).
//!
//! `cargo bench --bench io` (`CTM_BENCH_BIG=0` leaves out the
//! 20,000-container host, which takes minutes to apply). Prints medians,
//! the spread, and ratios; asserts nothing about time.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctm::synthetic::host_kdl;

fn ctm(args: &[&str], cwd: &Path) -> Duration {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ctm"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("ctm runs");
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "ctm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median, min and max.
fn stats(runs: &[Duration]) -> (Duration, Duration, Duration) {
    let mut runs = runs.to_vec();
    runs.sort();
    (runs[runs.len() / 2], runs[0], runs[runs.len() - 1])
}

fn show(name: &str, runs: &[Duration]) -> Duration {
    let (median, min, max) = stats(runs);
    println!(
        "  {name:<58} median {:9.1} ms  ({:.1}–{:.1}, {} runs)",
        ms(median),
        ms(min),
        ms(max),
        runs.len()
    );
    median
}

fn ratio(name: &str, a: Duration, b: Duration, budget: &str) {
    println!(
        "  {name:<58} {:9.2}×   budget: {budget}",
        a.as_secs_f64() / b.as_secs_f64()
    );
}

/// A directory under `CTM_BENCH_DIR` (default /var/tmp), refused on tmpfs.
fn scratch() -> tempfile::TempDir {
    let base =
        std::env::var_os("CTM_BENCH_DIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    let fs = nix::sys::statfs::statfs(&base).expect("statfs of CTM_BENCH_DIR");
    assert!(
        fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC,
        "{} is a tmpfs: set CTM_BENCH_DIR to a directory on a disk",
        base.display()
    );
    tempfile::Builder::new()
        .prefix("ctm-bench-io-")
        .tempdir_in(&base)
        .expect("scratch directory")
}

/// A tree as it is on disk, to be written again by [`plain_write`].
enum Node {
    Dir(u32),
    File(Vec<u8>, u32, u64),
    Symlink(PathBuf),
}

/// Everything under `root`, parents before children.
fn read_tree(root: &Path) -> Vec<(PathBuf, Node)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut children: Vec<_> = std::fs::read_dir(root.join(&rel))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        children.sort();
        for name in children {
            let rel = rel.join(name);
            let full = root.join(&rel);
            let meta = std::fs::symlink_metadata(&full).expect("lstat");
            if meta.is_dir() {
                out.push((rel.clone(), Node::Dir(meta.permissions().mode() & 0o7777)));
                stack.push(rel);
            } else if meta.is_symlink() {
                out.push((
                    rel,
                    Node::Symlink(std::fs::read_link(&full).expect("readlink")),
                ));
            } else if meta.is_file() {
                let bytes = std::fs::read(&full).expect("read");
                out.push((
                    rel,
                    Node::File(bytes, meta.permissions().mode() & 0o7777, meta.ino()),
                ));
            }
        }
    }
    out
}

fn count_files(tree: &[(PathBuf, Node)]) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for (_, node) in tree {
        match node {
            Node::Dir(_) => counts.0 += 1,
            Node::File(..) => counts.1 += 1,
            Node::Symlink(_) => counts.2 += 1,
        }
    }
    counts
}

/// The floor: `tree` created under `root` by the plainest writer, without
/// a sync; files with several names are hard-linked, as they were.
fn plain_write(root: &Path, tree: &[(PathBuf, Node)]) -> Duration {
    let started = Instant::now();
    std::fs::create_dir_all(root).expect("mkdir root");
    let mut linked: HashMap<u64, PathBuf> = HashMap::new();
    for (rel, node) in tree {
        let full = root.join(rel);
        match node {
            Node::Dir(mode) => std::fs::DirBuilder::new()
                .mode(*mode)
                .create(&full)
                .expect("mkdir"),
            Node::File(bytes, mode, ino) => {
                if let Some(first) = linked.get(ino) {
                    std::fs::hard_link(first, &full).expect("link");
                    continue;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(*mode)
                    .open(&full)
                    .expect("create");
                f.write_all(bytes).expect("write");
                linked.insert(*ino, full);
            }
            Node::Symlink(target) => std::os::unix::fs::symlink(target, &full).expect("symlink"),
        }
    }
    started.elapsed()
}

/// Each regular file's inode and mtime, and each symlink, under `root`.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, i64, i64, bool)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let path = e.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            if meta.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(
                    rel,
                    (
                        meta.ino(),
                        meta.mtime(),
                        meta.mtime_nsec(),
                        meta.is_symlink(),
                    ),
                );
            }
        }
    }
    out
}

/// The files whose bytes were written between two snapshots (a new inode,
/// or a new mtime), and the symlinks made; a new name for an inode that
/// was already there (a hard link) is not a write.
fn written(
    before: &BTreeMap<PathBuf, (u64, i64, i64, bool)>,
    after: &BTreeMap<PathBuf, (u64, i64, i64, bool)>,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let inodes: std::collections::HashSet<u64> = before.values().map(|v| v.0).collect();
    let (mut files, mut links) = (Vec::new(), Vec::new());
    for (path, now) in after {
        if before.get(path) == Some(now) {
            continue;
        }
        if now.3 {
            links.push(path.clone());
        } else if !inodes.contains(&now.0) || before.get(path).is_some_and(|b| b.0 == now.0) {
            files.push(path.clone());
        }
    }
    (files, links)
}

/// The host file's networks and tunnels as netplan YAML.
fn netplan_yaml(networks: usize, tunnels: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("network:\n  version: 2\n  renderer: networkd\n  bridges:\n");
    for i in 0..networks {
        let base = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)) + (i as u32) * 1024;
        let _ = write!(
            out,
            "    br{i}:\n      addresses:\n        - {}/22\n        - \"fd00:{i:x}::1/64\"\n",
            std::net::Ipv4Addr::from(base + 1)
        );
    }
    out.push_str("  tunnels:\n");
    for i in 0..tunnels {
        let local = u32::from(std::net::Ipv4Addr::new(172, 16, 0, 0)) + 2 * i as u32;
        let remote = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0)) + 1 + i as u32;
        let _ = write!(
            out,
            "    site{i}:\n      mode: gre\n      local: 192.0.2.1\n      remote: {}\n      addresses:\n        - {}/31\n",
            std::net::Ipv4Addr::from(remote),
            std::net::Ipv4Addr::from(local)
        );
        if i % 2 == 0 {
            let _ = writeln!(out, "        - \"fdff:{i:x}::/127\"");
        }
    }
    out
}

fn netplan(program: &str, root: &Path) -> Duration {
    let started = Instant::now();
    let out = Command::new(program)
        .arg(if program.ends_with("/generate") {
            "--root-dir"
        } else {
            "generate"
        })
        .args(if program.ends_with("/generate") {
            vec![]
        } else {
            vec!["--root-dir"]
        })
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("netplan runs");
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "netplan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn netplan_root(work: &Path, name: &str, yaml: &str) -> PathBuf {
    let root = work.join(name);
    std::fs::create_dir_all(root.join("etc/netplan")).expect("mkdir");
    let file = root.join("etc/netplan/50-bench.yaml");
    std::fs::write(&file, yaml).expect("write yaml");
    // netplan warns about configuration others can read.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    root
}

/// Rows 1 and 2: 500 bridges + 500 GRE tunnels, fresh and again.
fn networks(runs: usize) {
    println!("\n== compile --out: 500 bridges + 500 GRE tunnels (no containers)");
    let work = scratch();
    let w = work.path();
    std::fs::write(w.join("net.kdl"), host_kdl(0, 500, 500)).expect("write host");
    // One compile to read the tree the floor writes.
    ctm(&["compile", "net.kdl", "--out", "probe"], w);
    let tree = read_tree(&w.join("probe"));
    let (dirs, files, links) = count_files(&tree);
    println!("  tree: {files} files, {links} symlinks, {dirs} directories");
    let netplan_cli = Path::new("/usr/sbin/netplan");
    let generator = ["/usr/lib/netplan/generate", "/lib/netplan/generate"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let have_netplan = netplan_cli.exists() && generator.is_some();
    if !have_netplan {
        println!(
            "  SKIPPED the netplan comparison: netplan.io is not installed \
             (apt-get install netplan.io)"
        );
    }
    let yaml = netplan_yaml(500, 500);
    let (mut fresh, mut floor, mut np, mut npc) = (vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        let out = format!("out{i}");
        fresh.push(ctm(&["compile", "net.kdl", "--out", &out], w));
        floor.push(plain_write(&w.join(format!("floor{i}")), &tree));
        if have_netplan {
            np.push(netplan(
                &netplan_cli.to_string_lossy(),
                &netplan_root(w, &format!("np{i}"), &yaml),
            ));
            npc.push(netplan(
                generator.unwrap_or_default(),
                &netplan_root(w, &format!("npc{i}"), &yaml),
            ));
        }
    }
    let fresh_m = show("ctm compile --out, fresh directory", &fresh);
    let floor_m = show("plain writer, same tree (floor)", &floor);
    ratio("ctm / floor", fresh_m, floor_m, "≤ 1.5");
    if have_netplan {
        let netplan_files = read_tree(&w.join("np0/run"));
        let (d, f, l) = count_files(&netplan_files);
        println!("  netplan's tree under run/: {f} files, {l} symlinks, {d} directories");
        let np_m = show("netplan generate --root-dir, fresh", &np);
        let npc_m = show("netplan's C generator alone, fresh", &npc);
        ratio("ctm / netplan generate", fresh_m, np_m, "< 1");
        ratio(
            "ctm / netplan's C generator",
            fresh_m,
            npc_m,
            "(for reference)",
        );
    }
    // Again into the existing trees.
    let (mut again, mut np_again, mut npc_again) = (vec![], vec![], vec![]);
    for i in 0..runs {
        let out = format!("out{i}");
        again.push(ctm(&["compile", "net.kdl", "--out", &out], w));
        if have_netplan {
            np_again.push(netplan(
                &netplan_cli.to_string_lossy(),
                &w.join(format!("np{i}")),
            ));
            npc_again.push(netplan(
                generator.unwrap_or_default(),
                &w.join(format!("npc{i}")),
            ));
        }
    }
    let again_m = show("ctm compile --out, again into its tree", &again);
    if have_netplan {
        let np_m = show("netplan generate again", &np_again);
        let npc_m = show("netplan's C generator alone, again", &npc_again);
        ratio("netplan generate again / ctm again", np_m, again_m, "≥ 10");
        ratio(
            "netplan's C generator again / ctm again",
            npc_m,
            again_m,
            "(for reference)",
        );
    }
}

/// Row 3: the 1,000-container host compiled into a fresh directory.
fn compile_big(runs: usize) {
    println!("\n== compile --out: 1,000 containers (100 networks, 50 tunnels)");
    let work = scratch();
    let w = work.path();
    std::fs::write(w.join("host.kdl"), host_kdl(1000, 100, 50)).expect("write host");
    ctm(&["compile", "host.kdl", "--out", "probe"], w);
    let tree = read_tree(&w.join("probe"));
    let (dirs, files, links) = count_files(&tree);
    println!("  tree: {files} files, {links} symlinks, {dirs} directories");
    let (mut fresh, mut floor) = (vec![], vec![]);
    for i in 0..runs {
        fresh.push(ctm(
            &["compile", "host.kdl", "--out", &format!("out{i}")],
            w,
        ));
        floor.push(plain_write(&w.join(format!("floor{i}")), &tree));
    }
    let fresh_m = show("ctm compile --out, fresh directory", &fresh);
    let floor_m = show("plain writer, same tree (floor)", &floor);
    ratio("ctm / floor", fresh_m, floor_m, "≤ 1.5");
}

/// Row 4: the first apply of the 1,000-container host.
fn first_apply(runs: usize) {
    println!("\n== first apply --root: 1,000 containers");
    let work = scratch();
    let w = work.path();
    std::fs::write(w.join("host.kdl"), host_kdl(1000, 100, 50)).expect("write host");
    ctm(
        &["apply", "host.kdl", "--yes", "--no-diff", "--root", "probe"],
        w,
    );
    // What an apply must create: the live tree and one generation. The
    // stat cache and the lock are not part of it.
    let tree = read_tree(&w.join("probe"));
    let (dirs, files, links) = count_files(&tree);
    println!("  tree: {files} files, {links} symlinks, {dirs} directories (live tree + state)");
    let (mut apply, mut floor, mut floor_sync) = (vec![], vec![], vec![]);
    for i in 0..runs {
        apply.push(ctm(
            &[
                "apply",
                "host.kdl",
                "--yes",
                "--no-diff",
                "--root",
                &format!("root{i}"),
            ],
            w,
        ));
        floor.push(plain_write(&w.join(format!("floor{i}")), &tree));
        let dir = w.join(format!("floor-sync{i}"));
        let started = Instant::now();
        plain_write(&dir, &tree);
        let fd = std::fs::File::open(&dir).expect("open");
        nix::unistd::syncfs(&fd).expect("syncfs");
        floor_sync.push(started.elapsed());
    }
    let apply_m = show("ctm apply, empty root", &apply);
    let floor_m = show("plain writer, same tree (floor)", &floor);
    show("plain writer, same tree, then one syncfs", &floor_sync);
    ratio("ctm / floor", apply_m, floor_m, "≤ 2.5");
}

/// Rows 5, 6 and 8: apply after a one-container edit, and the no-op plan,
/// at each size; returns (containers, no-op plan median).
fn plan_and_edit(containers: usize, runs: usize) -> Duration {
    println!("\n== {containers} containers: no-op plan --root, apply after a one-container edit");
    let work = scratch();
    let w = work.path();
    let text = host_kdl(containers, 100, 50);
    std::fs::write(w.join("host.kdl"), &text).expect("write host");
    let started = Instant::now();
    ctm(
        &["apply", "host.kdl", "--yes", "--no-diff", "--root", "root"],
        w,
    );
    println!("  (first apply: {:.1} s)", started.elapsed().as_secs_f64());
    let root = w.join("root");
    // The stat cache trusts a file once its ctime is 2 s old; the first
    // plan after that records it.
    std::thread::sleep(Duration::from_millis(2100));
    let plan = [
        "plan",
        "host.kdl",
        "--no-diff",
        "--detailed-exitcode",
        "--root",
        "root",
    ];
    ctm(&plan, w);
    let current = std::fs::read_link(root.join("var/lib/ctm/current")).expect("current");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            root.join("var/lib/ctm")
                .join(&current)
                .join("manifest.json"),
        )
        .expect("manifest"),
    )
    .expect("manifest JSON");
    let managed: Vec<PathBuf> = manifest["files"]
        .as_object()
        .expect("files")
        .keys()
        .map(|p| root.join(p))
        .collect();
    let (mut plans, mut lstats) = (vec![], vec![]);
    for _ in 0..runs {
        plans.push(ctm(&plan, w));
        let started = Instant::now();
        for path in &managed {
            std::hint::black_box(std::fs::symlink_metadata(path).expect("lstat"));
        }
        lstats.push(started.elapsed());
    }
    println!("  {} managed files", managed.len());
    let plan_m = show("no-op ctm plan --root", &plans);
    let lstat_m = show("one lstat per managed file, in-process (floor)", &lstats);
    ratio(
        "no-op plan / floor",
        plan_m,
        lstat_m,
        "≤ 1.3 (and < 50 ms at 1,000)",
    );

    // One container's memory limit changed: ct00007 is a server.
    let edited = text.replacen(
        "container \"ct00007\" {\n",
        "container \"ct00007\" {\n    limits memory=\"3G\"\n",
        1,
    );
    assert_ne!(edited, text, "the edit applies");
    let apply = ["apply", "host.kdl", "--yes", "--no-diff", "--root", "root"];
    std::fs::write(w.join("host.kdl"), &edited).expect("write host");
    let before = snapshot(&root);
    let mut applies = vec![ctm(&apply, w)];
    let after = snapshot(&root);
    // Then the edit undone and made again, in turns: each apply changes
    // that one container's files, and makes a generation.
    for run in 1..runs {
        let text = if run % 2 == 1 { &text } else { &edited };
        std::fs::write(w.join("host.kdl"), text).expect("write host");
        applies.push(ctm(&apply, w));
    }
    let (files, links) = written(&before, &after);
    let (live, state): (Vec<_>, Vec<_>) = files.iter().partition(|p| !p.starts_with("var/lib/ctm"));
    let apply_m = show(
        "apply after a one-container edit (made and undone)",
        &applies,
    );
    ratio("apply after an edit / no-op plan", apply_m, plan_m, "≤ 1.5");
    println!(
        "  files written: {} in the live tree {:?}; {} in the state {:?}; {} symlinks made",
        live.len(),
        live,
        state.len(),
        state
            .iter()
            .map(|p| p.strip_prefix("var/lib/ctm").unwrap_or(p))
            .collect::<Vec<_>>(),
        links.len()
    );
    plan_m
}

/// Row 7: `ctm serve`, `POST /api/plan` from two clients, bodies that
/// differ per request (a comment with a running number), on the
/// 1,000-container host.
fn serve(seconds: u64) {
    println!("\n== ctm serve: POST /api/plan, 1,000 containers, 2 clients, {seconds} s");
    let work = scratch();
    let w = work.path();
    let text = host_kdl(1000, 100, 50);
    std::fs::write(w.join("host.kdl"), &text).expect("write host");
    ctm(
        &["apply", "host.kdl", "--yes", "--no-diff", "--root", "root"],
        w,
    );
    std::thread::sleep(Duration::from_millis(2100));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let mut server = Command::new(env!("CARGO_BIN_EXE_ctm"))
        .args([
            "serve",
            "host.kdl",
            "--root",
            "root",
            "--files-only",
            "--listen",
        ])
        .arg(addr.to_string())
        .current_dir(w)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ctm serve starts");
    let token_path = w.join("root/var/lib/ctm/web-token");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() || !token_path.exists() {
        assert!(Instant::now() < deadline, "ctm serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = std::fs::read_to_string(&token_path)
        .expect("token")
        .trim()
        .to_string();
    let request = |stream: &mut BufReader<TcpStream>, n: usize| -> Duration {
        let body = serde_json::to_vec(&serde_json::json!({ "text": format!("{text}\n// {n}\n") }))
            .expect("body");
        let started = Instant::now();
        let head = format!(
            "POST /api/plan HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let s = stream.get_mut();
        s.write_all(head.as_bytes()).expect("send");
        s.write_all(&body).expect("send");
        let mut status = String::new();
        stream.read_line(&mut status).expect("status");
        assert!(status.contains(" 200 "), "{status}");
        let mut length = None;
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let mut answer = vec![0; length.expect("a Content-Length")];
        stream.read_exact(&mut answer).expect("body");
        let elapsed = started.elapsed();
        let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
        assert_eq!(answer["plan"]["summary"]["change"], 0, "a no-op plan");
        elapsed
    };
    let connect = || BufReader::new(TcpStream::connect(addr).expect("connect"));
    // Warm the server: its memory, the stat cache, the inotify watches.
    let mut warm = connect();
    for n in 0..3 {
        request(&mut warm, n);
    }
    let cpu_before = cpu_ticks(server.id());
    let started = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..2)
            .map(|c| {
                let request = &request;
                scope.spawn(move || {
                    let mut stream = connect();
                    let mut out = Vec::new();
                    let mut n = 1000 * (c + 1);
                    while started.elapsed() < Duration::from_secs(seconds) {
                        out.push(request(&mut stream, n));
                        n += 1;
                    }
                    out
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("client"))
            .collect()
    });
    let cpu = cpu_ticks(server.id()) - cpu_before;
    let _ = server.kill();
    let _ = server.wait();
    let mut sorted = latencies.clone();
    sorted.sort();
    let pct =
        |p: f64| sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1];
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    println!(
        "  {} requests: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (budget: p99 < 50 ms); \
         server CPU {:.1} ms per request",
        sorted.len(),
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(pct(0.99)),
        ms(sorted[sorted.len() - 1]),
        cpu as f64 / ticks * 1000.0 / sorted.len() as f64
    );
}

/// User + system time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let mut stat = String::new();
    std::fs::File::open(format!("/proc/{pid}/stat"))
        .and_then(|mut f| f.read_to_string(&mut stat))
        .expect("/proc/PID/stat");
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would run this
    // too, so only measure when asked to.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let only = std::env::var("CTM_BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only.split(',').any(|o| o == part);
    println!(
        "load average at the start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if run("networks") {
        networks(7);
    }
    if run("compile") {
        compile_big(7);
    }
    if run("apply") {
        first_apply(5);
    }
    if run("plan") {
        let big = std::env::var("CTM_BENCH_BIG").map_or(true, |v| v != "0");
        let mut medians = Vec::new();
        for (containers, runs) in [(1000, 15), (5000, 9), (20000, 5)] {
            if containers == 20000 && !big {
                println!("\n(20,000 containers left out: CTM_BENCH_BIG=0)");
                continue;
            }
            medians.push((containers, plan_and_edit(containers, runs)));
        }
        if let [(a, ta), (b, tb), ..] = medians[..] {
            let exponent = (tb.as_secs_f64() / ta.as_secs_f64()).ln() / (b as f64 / a as f64).ln();
            println!(
                "\n  growth of the no-op plan from {a} to {b} containers: exponent {exponent:.2} (budget: linear, 1.0)"
            );
        }
        if let [(a, ta), _, (b, tb)] = medians[..] {
            let exponent = (tb.as_secs_f64() / ta.as_secs_f64()).ln() / (b as f64 / a as f64).ln();
            println!(
                "  growth of the no-op plan from {a} to {b} containers: exponent {exponent:.2}"
            );
        }
    }
    if run("serve") {
        serve(20);
    }
}
