//! The pipeline on synthetic hosts (`ctm::synthetic::host_kdl`).
//!
//! `cargo bench --bench compile`. The headline number is
//! `pipeline/parse+validate+compile/1000`: a host of 1,000 containers on
//! 100 networks with 50 tunnels, from text to artifacts. The 100- and
//! 5,000-container variants of the full pipeline show how it grows; the
//! `stages` group times parsing, validation and compilation on their own.
//! Figures and the way to measure memory: docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use ctm::config::{self, Format, Source};
use ctm::lock::Lock;
use ctm::synthetic::host_kdl;
use ctm::{compile, validate};

const NETWORKS: usize = 100;
const TUNNELS: usize = 50;

fn source(containers: usize) -> Source {
    Source::new(
        "synthetic.kdl",
        host_kdl(containers, NETWORKS, TUNNELS),
        Format::Kdl,
    )
}

fn parse(source: &Source) -> config::Document {
    let (doc, diagnostics) = config::parse(source);
    assert!(diagnostics.is_empty());
    doc
}

fn parse_validate(source: &Source) -> validate::Validated {
    let doc = parse(source);
    validate::validate(&doc, &Lock::empty()).expect("the synthetic host is valid")
}

fn full(source: &Source) -> compile::Artifacts {
    compile::compile(&parse_validate(source).host)
}

fn stages(c: &mut Criterion) {
    let mut group = c.benchmark_group("stages");
    let src = source(1000);
    group.bench_function("parse/1000", |b| b.iter(|| parse(black_box(&src))));
    group.bench_function("parse+validate/1000", |b| {
        b.iter(|| parse_validate(black_box(&src)))
    });
    // Each of the later stages alone, to tell where the time goes.
    let doc = parse(&src);
    group.bench_function("validate-only/1000", |b| {
        b.iter(|| validate::validate(black_box(&doc), &Lock::empty()).is_ok())
    });
    let host = parse_validate(&src).host;
    group.bench_function("compile-only/1000", |b| {
        b.iter(|| compile::compile(black_box(&host)))
    });
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    for containers in [100, 1000, 5000] {
        let src = source(containers);
        group.bench_with_input(
            BenchmarkId::new("parse+validate+compile", containers),
            &src,
            |b, src| b.iter(|| full(black_box(src))),
        );
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = benches;
    config = config();
    targets = stages, pipeline
}
criterion_main!(benches);
