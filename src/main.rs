//! The `ecr-secret-refresher` command: parse flags, set up logging, run one refresh (or a
//! subcommand), exit.

use std::process::ExitCode;

use ecr_secret_refresher::commands::{
    credential_process, doctor, doctor_image, kubelet_credential_provider, refresh, watch,
};
use ecr_secret_refresher::config::{Cli, Command};
use ecr_secret_refresher::logging;
use ecr_secret_refresher::report::RunStatus;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
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
    if let Some(Command::CredentialProcess) = cli.command {
        return match runtime.block_on(credential_process::run(cli.roles_anywhere.clone())) {
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
    if let Some(Command::KubeletCredentialProvider) = cli.command {
        return kubelet(&cli, &runtime);
    }
    let command = cli.command.clone();
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return RunStatus::NothingDone.exit_code();
        }
    };
    if let Some(Command::Doctor(args)) = &command
        && args.image.is_some()
    {
        let rows = runtime.block_on(doctor_image::run(&config, args));
        print!("{}", doctor_image::render(&rows, config.log_format));
        return if doctor_image::passed(&rows) {
            ExitCode::SUCCESS
        } else {
            RunStatus::SomeFailed.exit_code()
        };
    }
    if let Some(Command::Watch(args)) = &command {
        return runtime.block_on(watch::run(&config, args)).exit_code();
    }
    if let Some(Command::Doctor(_)) = command {
        let rows = runtime.block_on(doctor::run(&config));
        print!("{}", doctor::render(&rows));
        return if doctor::passed(&rows) {
            ExitCode::SUCCESS
        } else {
            RunStatus::SomeFailed.exit_code()
        };
    }
    runtime.block_on(refresh::run(&config)).exit_code()
}

/// One kubelet request: stdin to stdout. Errors go to stderr; the kubelet shows them with the
/// failed pull.
fn kubelet(cli: &Cli, runtime: &tokio::runtime::Runtime) -> ExitCode {
    let answer = kubelet_credential_provider::settings(cli).and_then(|settings| {
        let input = kubelet_credential_provider::read_request(std::io::stdin().lock())?;
        runtime.block_on(kubelet_credential_provider::run(&settings, &input))
    });
    match answer {
        Ok(json) => {
            println!("{}", json.expose());
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            RunStatus::NothingDone.exit_code()
        }
    }
}
