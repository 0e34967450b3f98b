//! The `leadbridge` binary: parses the command line and hands each verb to
//! its module under `cli`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    version,
    about = "Microsoft marketplace leads into Dynamics 365, durably."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the lead endpoint, the admin listener and the delivery worker.
    Serve(cli::serve::Args),
    /// Validate the configuration and every mapping file; with --live, also
    /// against each organization's Dataverse (token, WhoAmI, column metadata).
    Check(cli::check::Args),
    /// Print the Dataverse request a lead would become. No network.
    Render(cli::render::Args),
    /// POST a test lead to an endpoint, as Partner Center's Validate button
    /// does, and print the answer.
    SendTestLead(cli::send_test_lead::Args),
    /// Delivery history, dead letters and replay.
    Deliveries(cli::deliveries::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve(args) => cli::serve::run(args),
        Command::Check(args) => cli::check::run(args),
        Command::Render(args) => cli::render::run(args),
        Command::SendTestLead(args) => cli::send_test_lead::run(args),
        Command::Deliveries(args) => cli::deliveries::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leadbridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks conflicting or misnamed arguments only when asked; the
    /// `mut_arg("config", ..)` calls would otherwise fail first at a user's
    /// terminal.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
