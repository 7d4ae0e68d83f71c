//! The `stompbox` binary: parse the command line, initialise logging, run.

use clap::Parser;

fn main() -> std::process::ExitCode {
    stompbox::limits::tune_allocator();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = stompbox::cli::Cli::parse();
    match stompbox::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stompbox: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
