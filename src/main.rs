//! The `ecr-secret-refresher` command: parse flags, set up logging, run one refresh (or a
//! subcommand), exit.

use std::process::ExitCode;

use clap::Parser;
use ecr_secret_refresher::config::{Cli, Command};
use ecr_secret_refresher::report::RunStatus;
use ecr_secret_refresher::{credential_process, logging, refresh};

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return RunStatus::NothingDone.exit_code();
        }
    };
    if let Some(Command::CredentialProcess(args)) = cli.command.take() {
        return match runtime.block_on(credential_process::run(args)) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                RunStatus::NothingDone.exit_code()
            }
        };
    }
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return RunStatus::NothingDone.exit_code();
        }
    };
    runtime.block_on(refresh::run(&config)).exit_code()
}
