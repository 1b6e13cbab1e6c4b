//! `completion` and `man`: shell completion scripts and man pages generated from the one clap
//! definition (with the EXAMPLES, EXIT STATUS and ENVIRONMENT text of `--help`), so they can
//! never disagree with the flags.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use clap_complete::Shell;

use super::{Env, code};

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The folder to write the pages into (made if missing); without it, cista(1) goes to
    /// standard output.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// `completion SHELL`: the script on standard output (`cista completion bash >
/// /etc/bash_completion.d/cista`).
pub fn completion(a: CompletionArgs) -> Result<u8> {
    let mut cmd = super::help::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "cista", &mut out);
    let mut stdout = super::output::Out::new();
    stdout.write_all(&out)?;
    stdout.finish()?;
    Ok(code::OK)
}

/// `man [--dir DIR]`: cista(1) on standard output, or every page into DIR.
pub fn man(env: &Env, a: ManArgs) -> Result<u8> {
    let cmd = super::help::command();
    match a.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            let mut stdout = super::output::Out::new();
            stdout.write_all(&out)?;
            stdout.finish()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            env.info(format_args!("man pages written to {}", dir.display()))?;
        }
    }
    Ok(code::OK)
}
