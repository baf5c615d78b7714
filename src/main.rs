// A plan request allocates and frees some 100,000 small strings and maps;
// with glibc's malloc that was a third of its CPU time (docs/benchmarks.md,
// "The web editor"), mimalloc takes a fifth off the whole request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ctm::cli::main()
}
