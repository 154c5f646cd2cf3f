use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::{Failure, Outcome};
use crate::cli::ProfileCommand;
use crate::profile::{self, Profile, SearchPath, Source};

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
            let r = profile::resolve(&profile, &search).map_err(Failure::invalid)?;
            let mut params = r.profile.params.clone();
            params.extend(super::exec::parse_params(&param)?);
            let spec = profile::oci::export(&r.profile, &params, &command, host_id_base)
                .map_err(Failure::failed)?;
            print_json(&spec)
        }
        ProfileCommand::List { json } => list(json, &search),
    }
}

fn check(files: &[String], json: bool, search: &SearchPath) -> Outcome {
    let mut failed = false;
    let mut report = Vec::new();
    for file in files {
        match profile::resolve(file, search) {
            Ok(_) => {
                if !json {
                    println!("{file}: ok");
                }
                report.push(json!({"file": file, "ok": true, "errors": []}));
            }
            Err(errors) => {
                failed = true;
                if !json {
                    for e in &errors.0 {
                        eprintln!("{e}");
                    }
                }
                let list: Vec<_> = errors
                    .0
                    .iter()
                    .map(|e| json!({"file": e.file, "line": e.line, "column": e.col, "message": e.message}))
                    .collect();
                report.push(json!({"file": file, "ok": false, "errors": list}));
            }
        }
    }
    if json {
        print_json(&serde_json::Value::Array(report))?;
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
    let mut names: Vec<(String, String)> = Vec::new();
    for dir in &search.dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut found: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        found.sort();
        for p in found {
            if let Some(stem) = p.file_stem().and_then(|s| s.to_str())
                && !names.iter().any(|(n, _)| n == stem)
            {
                names.push((stem.to_string(), p.display().to_string()));
            }
        }
    }
    for n in profile::builtin_names() {
        if !names.iter().any(|(m, _)| m == n) {
            names.push((n.to_string(), "<built-in>".into()));
        }
    }
    if json {
        let v: Vec<_> = names
            .iter()
            .map(|(n, w)| json!({"name": n, "source": w}))
            .collect();
        return print_json(&serde_json::Value::Array(v));
    }
    for (n, w) in names {
        println!("{n:<16} {w}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(v: &serde_json::Value) -> Outcome {
    let text = serde_json::to_string_pretty(v).map_err(Failure::failed)?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}
