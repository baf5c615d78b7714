// A plan request allocates and frees some 100,000 small strings and maps;
// with glibc's malloc that was a third of its CPU time (docs/benchmarks.md,
// "The web editor"), mimalloc takes a fifth off the whole request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The composition root: the command line runs every command but one;
/// `ctm serve` starts the web face.
fn main() -> std::process::ExitCode {
    match ctm::cli::main() {
        ctm::cli::Run::Done(code) => code,
        ctm::cli::Run::Serve(args) => {
            ctm::cli::report(ctm::web::serve::run(&ctm::web::serve::Options {
                file: args.file,
                fleet: args.fleet,
                ssh_config: args.ssh_config,
                root: args.root,
                listen: args.listen,
                files_only: args.files_only,
            }))
        }
    }
}
