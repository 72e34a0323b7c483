//! The Tera environment: the built-in templates compiled into the binary, site templates
//! that replace them, and the `sh` / `sbatch` quoting filters.
//!
//! Built-ins are registered as `array.sbatch.tera` and `tasks.sbatch.tera`, so a site
//! template can `{% extends "array.sbatch.tera" %}` and override only the blocks it needs
//! (`header`, `directives`, `setup`, `run`). Site templates are registered under `site/`.
//! This module renders; it decides nothing about the job.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tera::{Context, Tera, Value};

use crate::domain::script::context::ScriptContext;
use crate::domain::script::quote;
use crate::domain::site_config::Mode;

pub const ARRAY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/templates/array.sbatch.tera"
));
pub const TASKS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/templates/tasks.sbatch.tera"
));

/// The built-in template's name (and file name in a site template folder) for a mode.
pub fn name(mode: Mode) -> &'static str {
    match mode {
        Mode::Array => "array.sbatch.tera",
        Mode::Tasks => "tasks.sbatch.tera",
    }
}

/// A template that cannot be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {what} does not compile")]
    Compile { what: String, source: tera::Error },
    #[error("template {what} cannot be rendered")]
    Render { what: String, source: tera::Error },
    #[error(
        "template {what} renders a script that does not start with `#!`; \
         sbatch refuses such scripts (put `#!/bin/bash` on its first line)"
    )]
    NoShebang { what: String },
}

/// A Tera environment ready to render one mode's script.
pub struct Templates {
    tera: Tera,
    main: String,
    /// What renders, for messages and the header: `built-in array.sbatch.tera`, or a path.
    pub what: String,
}

impl Templates {
    /// Loads the built-ins and the site's template for `mode`: `file` wins over `dir`; a
    /// `dir` without a template for this mode leaves the built-in one in charge.
    pub fn load(
        mode: Mode,
        file: Option<&Path>,
        dir: Option<&Path>,
    ) -> Result<Templates, TemplateError> {
        let mut sources: Vec<(String, String)> = vec![
            (name(Mode::Array).to_string(), ARRAY.to_string()),
            (name(Mode::Tasks).to_string(), TASKS.to_string()),
        ];
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let (main, what) = if let Some(file) = file {
            sources.push((site_name(file), read(file)?));
            (site_name(file), file.display().to_string())
        } else if let Some(dir) = dir.filter(|d| d.join(name(mode)).is_file()) {
            for path in tera_files(dir)? {
                sources.push((site_name(&path), read(&path)?));
            }
            let path = dir.join(name(mode));
            (site_name(&path), path.display().to_string())
        } else {
            (name(mode).to_string(), format!("built-in {}", name(mode)))
        };
        let mut tera = Tera::default();
        tera.autoescape_on(vec![]);
        tera.register_filter("sh", sh_filter);
        tera.register_filter("sbatch", sbatch_filter);
        tera.add_raw_templates(sources)
            .map_err(|source| TemplateError::Compile {
                what: what.clone(),
                source,
            })?;
        Ok(Templates { tera, main, what })
    }

    /// Renders the script.
    pub fn render(&self, ctx: &ScriptContext) -> Result<String, TemplateError> {
        let render_error = |source| TemplateError::Render {
            what: self.what.clone(),
            source,
        };
        let context = Context::from_serialize(ctx).map_err(render_error)?;
        let script = self
            .tera
            .render(&self.main, &context)
            .map_err(render_error)?;
        if !script.starts_with("#!") {
            return Err(TemplateError::NoShebang {
                what: self.what.clone(),
            });
        }
        Ok(script)
    }
}

fn site_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    format!("site/{file}")
}

/// The `*.tera` files of a site template folder (not recursive), sorted.
fn tera_files(dir: &Path) -> Result<Vec<PathBuf>, TemplateError> {
    let err = |source| TemplateError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if path.extension().is_some_and(|e| e == "tera") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// `{{ x | sh }}`: a string as one bash word; a list as quoted words joined by spaces.
fn sh_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(match value {
        Value::Array(items) => quote::sh_join(&items.iter().map(plain).collect::<Vec<_>>()),
        other => quote::sh(&plain(other)),
    }))
}

/// `{{ x | sbatch }}`: a value for an `#SBATCH --opt=` line.
fn sbatch_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(quote::sbatch(&plain(value))))
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_str(template: &str, vars: &[(&str, Value)]) -> String {
        let mut tera = Tera::default();
        tera.register_filter("sh", sh_filter);
        tera.register_filter("sbatch", sbatch_filter);
        let mut ctx = Context::new();
        for (k, v) in vars {
            ctx.insert(*k, v);
        }
        tera.render_str(template, &ctx).unwrap()
    }

    #[test]
    fn filters_quote() {
        let out = render_str(
            "{{ a | sh }} {{ l | sh }} {{ n | sh }} {{ d | sbatch }}",
            &[
                ("a", Value::from("it's")),
                ("l", Value::from(vec!["x", "y z"])),
                ("n", Value::from(4)),
                ("d", Value::from("/a b/%j.out")),
            ],
        );
        assert_eq!(out, r#"'it'\''s' x 'y z' 4 "/a b/%j.out""#);
    }

    #[test]
    fn builtins_compile() {
        for mode in [Mode::Array, Mode::Tasks] {
            let t = Templates::load(mode, None, None).unwrap();
            assert_eq!(t.what, format!("built-in {}", name(mode)));
        }
    }

    #[test]
    fn site_file_and_dir() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tasks.sbatch.tera");
        std::fs::write(&file, "{% extends \"tasks.sbatch.tera\" %}").unwrap();
        // A folder with only a tasks template: array mode keeps the built-in.
        let t = Templates::load(Mode::Array, None, Some(dir.path())).unwrap();
        assert_eq!(t.what, "built-in array.sbatch.tera");
        let t = Templates::load(Mode::Tasks, None, Some(dir.path())).unwrap();
        assert_eq!(t.what, file.display().to_string());
        // A broken file names itself.
        let bad = dir.path().join("bad.tera");
        std::fs::write(&bad, "{% if %}").unwrap();
        let e = Templates::load(Mode::Array, Some(&bad), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("bad.tera"), "{e}");
        let missing = dir.path().join("nope.tera");
        let e = Templates::load(Mode::Array, Some(&missing), None)
            .err()
            .unwrap();
        assert!(matches!(e, TemplateError::Read { .. }));
    }
}
