//! The hostile host files of issue 13 (`ctm::synthetic::hostile_kdl`),
//! each parsed, validated and its diagnostics turned into JSON as `ctm
//! check --format json` does: what took minutes, or did not finish, when
//! a check was quadratic.
//!
//! `cargo bench --bench hostile`. Figures, and the same files through the
//! `ctm` binary with their peak memory: docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use ctm::config::{self, Format, Source};
use ctm::diagnostic::{JsonDiagnostic, SourceFile};
use ctm::lock::Lock;
use ctm::synthetic::{Hostile, hostile_kdl};
use ctm::validate;

/// What `ctm check --format json` computes.
fn check(source: &Source) -> Vec<JsonDiagnostic> {
    let (doc, mut diagnostics) = config::parse(source);
    let readable = !doc.nodes.is_empty() || diagnostics.is_empty();
    if readable && let Err(more) = validate::validate(&doc, &Lock::empty()) {
        diagnostics.extend(more);
    }
    let file = SourceFile::new(&source.name, &source.text);
    diagnostics.iter().map(|d| d.to_json_in(&file)).collect()
}

fn hostile(c: &mut Criterion) {
    let mut group = c.benchmark_group("hostile");
    let cases = [
        (Hostile::RepeatedProperty, "repeated-property", 100_000),
        (Hostile::RepeatedNode, "repeated-node", 100_000),
        (Hostile::DistinctProperties, "distinct-properties", 100_000),
        // Just within the limit, and the 1,276 levels (refused).
        (Hostile::Nested, "nested", config::MAX_DEPTH - 1),
        (Hostile::Nested, "nested", 1276),
    ];
    for (kind, name, n) in cases {
        let source = Source::new("hostile.kdl", hostile_kdl(kind, n), Format::Kdl);
        group.bench_with_input(BenchmarkId::new(name, n), &source, |b, source| {
            b.iter(|| check(black_box(source)))
        });
    }
    group.finish();
}

/// The 50 MB file of 1,370,000 containers: seconds per iteration.
fn huge(c: &mut Criterion) {
    let mut group = c.benchmark_group("hostile");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    let n = 1_370_000;
    let source = Source::new(
        "hostile.kdl",
        hostile_kdl(Hostile::MinimalContainers, n),
        Format::Kdl,
    );
    group.bench_with_input(
        BenchmarkId::new("minimal-containers", n),
        &source,
        |b, source| b.iter(|| check(black_box(source))),
    );
    group.finish();
}

fn settings() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = benches;
    config = settings();
    targets = hostile, huge
}
criterion_main!(benches);
