//! The `cista` command: parse, run, map the outcome to a documented exit code (docs/CLI.md).
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // The derived definition plus examples, EXIT STATUS and ENVIRONMENT in every --help.
    let command = cli::help::command();
    // The profile's flags, put in as if typed (docs/CONFIG.md).
    let argv = match cli::config::expand(&command, std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            cli::output::warn(format!("cista: {e}"));
            return ExitCode::from(cli::code::USAGE);
        }
    };
    let matches = command.get_matches_from(argv);
    let args = match <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    match cli::run(args) {
        Ok(code) => ExitCode::from(code),
        // The reader of standard output went away: stop quietly, like a program killed by
        // SIGPIPE (nothing on stderr: `cista ls | head -1` is not an error worth a line).
        Err(err) if cli::output::is_stdout_closed(&err) => ExitCode::from(cli::code::STDOUT_CLOSED),
        Err(err) => {
            // One line: the error and its causes, outermost first.
            let mut msg = format!("cista: {err}");
            for cause in err.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            cli::output::warn(msg);
            ExitCode::from(cli::exit_code(&err))
        }
    }
}
