use std::path::Path;
use std::process::ExitCode;

use super::{Failure, Outcome};
use crate::profile::{self, Profile, SearchPath, Source};

#[derive(Debug, clap::Subcommand)]
pub enum ProfileCommand {
    /// Check profile files; print every problem as file:line:col and exit 2 if any.
    Check {
        /// Profile files (or names on the search path).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a profile; with --resolved, its `extends` merged in.
    Show {
        /// A profile name on the search path, or a file.
        #[arg(value_name = "NAME|FILE")]
        profile: String,
        /// Merge in every profile it extends and print the result.
        #[arg(long)]
        resolved: bool,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the profile format, for editors and CI.
    Schema,
    /// Print a profile as an OCI runtime config.json (Landlock only as an annotation).
    Oci {
        /// A profile name on the search path, or a file.
        #[arg(value_name = "NAME|FILE")]
        profile: String,
        /// Set a profile parameter.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        param: Vec<String>,
        /// First host id of the user-namespace mappings (container 0 → it, the profile's id → it + 1).
        #[arg(long, default_value_t = 100000, value_name = "ID")]
        host_id_base: u32,
        /// The container's command (after --).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// List the profiles found on the search path and built in.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ProfileCommand) -> Outcome {
    let search = SearchPath::from_env();
    match cmd {
        ProfileCommand::Check { files, json } => check(&files, json, &search),
        ProfileCommand::Show {
            profile,
            resolved,
            json,
        } => show(&profile, resolved, json, &search),
        ProfileCommand::Schema => print_json(&profile::schema()),
        ProfileCommand::Oci {
            profile,
            param,
            host_id_base,
            command,
        } => {
            let r = profile::resolve(&profile, &search)?;
            let mut params = r.profile.params.clone();
            params.extend(
                profile::params::parse(&param, &r.profile.params).map_err(Failure::invalid)?,
            );
            let spec = profile::oci::export(&r.profile, &params, &command, host_id_base)
                .map_err(Failure::failed)?;
            for loss in profile::oci::losses(&r.profile) {
                eprintln!("pairjail: warning: not in config.json: {loss}");
            }
            print_json(&serde_json::to_value(&spec).map_err(Failure::failed)?)
        }
        ProfileCommand::List { json } => list(json, &search),
    }
}

/// One file of `profile check --json`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct Checked {
    pub file: String,
    pub ok: bool,
    pub errors: Vec<CheckError>,
    /// Valid, but worth a second look (see `profile::warnings`).
    pub warnings: Vec<String>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct CheckError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// One line of `profile list --json`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct Listed {
    pub name: String,
    pub source: String,
}

fn check(files: &[String], json: bool, search: &SearchPath) -> Outcome {
    let mut failed = false;
    let mut report = Vec::new();
    for file in files {
        match profile::resolve(file, search) {
            Ok(r) => {
                let mut warnings = r.narrowed.clone();
                warnings.extend(profile::warnings::of(&r.profile));
                if !json {
                    println!("{file}: ok");
                    for w in &warnings {
                        println!("{file}: warning: {w}");
                    }
                }
                report.push(Checked {
                    file: file.clone(),
                    ok: true,
                    errors: vec![],
                    warnings,
                });
            }
            Err(errors) => {
                failed = true;
                if !json {
                    for e in &errors.0 {
                        eprintln!("{e}");
                    }
                }
                report.push(Checked {
                    file: file.clone(),
                    ok: false,
                    errors: errors
                        .0
                        .iter()
                        .map(|e| CheckError {
                            file: e.file.clone(),
                            line: e.line,
                            column: e.col,
                            message: e.message.clone(),
                        })
                        .collect(),
                    warnings: vec![],
                });
            }
        }
    }
    if json {
        super::print_json(&report)?;
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn show(arg: &str, resolved: bool, json: bool, search: &SearchPath) -> Outcome {
    if resolved {
        let r = profile::resolve(arg, search).map_err(Failure::invalid)?;
        return print_profile(&r.profile, json);
    }
    let src = if profile::is_path(arg) {
        Source::read(Path::new(arg)).map_err(Failure::invalid)?
    } else {
        search
            .find(arg, None)
            .ok_or_else(|| {
                Failure::invalid(format!(
                    "no profile named '{arg}' (see `pairjail profile list`)"
                ))
            })?
            .map_err(Failure::invalid)?
    };
    if json {
        // Parsed for its own fields only; `extends` is shown, not followed.
        let own: Profile = toml::from_str(&src.text)
            .map_err(|e| Failure::invalid(format!("{}: {}", src.name, e.message())))?;
        print_json(&serde_json::to_value(&own).map_err(Failure::failed)?)
    } else {
        print!("{}", src.text);
        Ok(ExitCode::SUCCESS)
    }
}

fn print_profile(p: &Profile, json: bool) -> Outcome {
    if json {
        print_json(&serde_json::to_value(p).map_err(Failure::failed)?)
    } else {
        let text = toml::to_string_pretty(p).map_err(Failure::failed)?;
        print!("{text}");
        Ok(ExitCode::SUCCESS)
    }
}

fn list(json: bool, search: &SearchPath) -> Outcome {
    let names = profile::available(search);
    if json {
        let v: Vec<Listed> = names
            .iter()
            .map(|(n, w)| Listed {
                name: n.clone(),
                source: w.clone(),
            })
            .collect();
        super::print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    for (n, w) in names {
        println!("{n:<16} {w}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(v: &serde_json::Value) -> Outcome {
    let text = crate::json_line::pretty(v).map_err(Failure::failed)?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}
