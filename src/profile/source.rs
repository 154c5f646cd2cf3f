//! One profile file's text and the name it is shown under in errors.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::ProfileError;
use super::locate::{self, Seg};
use super::model::Profile;

/// One file's text and the name it is shown under in errors.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
    /// The directory its own `extends` are looked up in first.
    pub dir: Option<PathBuf>,
    /// The file's own values, once parsed.
    pub own: Option<Profile>,
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, ProfileError> {
        let name = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|e| ProfileError {
            file: name.clone(),
            line: 0,
            col: 0,
            message: format!("cannot read: {e}"),
        })?;
        Ok(Source {
            name,
            text,
            dir: path.parent().map(Path::to_path_buf),
            own: None,
        })
    }

    /// An error at the start of `path`'s key (or value) in this file,
    /// or at 1:1 when the file does not set it.
    pub fn error_at(&self, path: &[Seg], key: bool, message: String) -> ProfileError {
        let offset = locate::span_of(&self.text, path, key).map_or(0, |s| s.start);
        self.error_at_offset(offset, message)
    }

    pub fn error_at_offset(&self, offset: usize, message: String) -> ProfileError {
        let (line, col) = locate::line_col(&self.text, offset);
        ProfileError {
            file: self.name.clone(),
            line,
            col,
            message,
        }
    }
}
