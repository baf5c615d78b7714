//! Committing the host file and its lock with git, after an apply from
//! the web editor.

use std::path::Path;
use std::process::Command;

/// Commits `files` (names in `dir`) with `message`, in the git repository
/// holding `dir`; says what happened, or why it failed.
pub fn commit(dir: &Path, files: &[&str], message: &str) -> Result<String, String> {
    let git = |args: &[&str]| -> Result<String, String> {
        let output = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            Ok(text)
        } else {
            Err(text.trim().to_string())
        }
    };
    let mut add = vec!["add", "--"];
    add.extend(files);
    git(&add)?;
    if git(&["diff", "--cached", "--quiet", "--"]).is_ok() {
        return Ok("git: nothing to commit, the host file and lock are committed already".into());
    }
    let mut commit = vec!["commit", "-q", "-m", message, "--"];
    commit.extend(files);
    git(&commit)?;
    Ok(format!(
        "git: committed {} ({message})",
        files.join(" and ")
    ))
}
