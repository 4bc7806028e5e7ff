//! The `outrigger` binary: parse flags, set up logging, run, map to an exit code.

use outrigger::cli::Command;

fn main() {
    // Not `Cli::parse()`: `run` takes its flags anywhere before `--`, as `dapr run` does.
    let cli = outrigger::launcher::args::parse_cli(std::env::args_os());
    if matches!(cli.command, Command::Sidecar(_) | Command::Run(_)) {
        outrigger::runtime::prewarm();
    }
    let code = match cli.command {
        Command::Sidecar(args) if args.kubernetes.wanted() => {
            outrigger::logging::init(&args.log_level, args.log_as_json, &args.app_id);
            run_async(
                args.worker_threads,
                outrigger::kubernetes::run_sidecar(args),
            )
        }
        Command::Sidecar(args) => {
            outrigger::logging::init(&args.log_level, args.log_as_json, &args.app_id);
            run_async(
                args.worker_threads,
                outrigger::run_sidecar(args.to_config()),
            )
        }
        Command::Injector(args) => {
            outrigger::logging::init(&args.log_level, args.log_as_json, "outrigger-injector");
            run_async(2, outrigger::kubernetes::injector::run(args))
        }
        Command::Run(args) => {
            run_async(args.sidecar.worker_threads, outrigger::launcher::run(args))
        }
    };
    outrigger::logging::flush();
    std::process::exit(code);
}

fn run_async(worker_threads: usize, fut: impl std::future::Future<Output = i32>) -> i32 {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("outrigger: cannot start the async runtime: {e}");
            1
        }
    }
}
