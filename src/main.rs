//! The `medianest` binary: parse the command line, run it, exit with its code.

use clap::Parser;

fn main() {
    let cli = match medianest::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version on stdout with code 0, and usage errors with code 2.
            let _ = e.print();
            std::process::exit(if e.use_stderr() { medianest::cli::exit::ERROR } else { medianest::cli::exit::OK });
        }
    };
    std::process::exit(medianest::cli::run(cli));
}
