//! The IDE's `file://` URIs as paths.
//!
//! `ls_types::Uri::to_file_path` takes any scheme and decodes percent escapes into UTF-8 lossily;
//! a workspace folder here must be a `file:` URI on this machine, and its path is decoded to the
//! exact bytes it names (`%20` a space, `%C3%A9` an `é`, `%FF` the byte 0xFF).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::path::PathBuf;
use std::str::FromStr as _;

use tower_lsp_server::ls_types::Uri;

/// The local path a `file:` URI names; `None` for another scheme or another host.
pub fn file_path(uri: &Uri) -> Option<PathBuf> {
    if !uri.scheme().as_str().eq_ignore_ascii_case("file") {
        return None;
    }
    if let Some(authority) = uri.authority() {
        let host = authority.host();
        if !host.is_empty() && !host.eq_ignore_ascii_case("localhost") {
            return None;
        }
    }
    let bytes = uri.path().decode().to_bytes().into_owned();
    if bytes.is_empty() {
        return None;
    }
    Some(PathBuf::from(OsString::from_vec(bytes)))
}

/// A folder named in a command's arguments: an absolute path, or a `file://` URI (one that does
/// not parse, e.g. with a raw space, is taken as the path after `file://`); `None` for another
/// kind of URI or a relative path.
pub fn folder_argument(folder: &str) -> Option<PathBuf> {
    if folder.starts_with('/') {
        return Some(PathBuf::from(folder));
    }
    match Uri::from_str(folder) {
        Ok(uri) => file_path(&uri),
        Err(_) => folder.strip_prefix("file://").map(PathBuf::from),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt as _;

    use super::*;

    fn path(uri: &str) -> Option<PathBuf> {
        file_path(&Uri::from_str(uri).expect("a valid URI"))
    }

    #[test]
    fn percent_escapes_decode_to_the_bytes_they_name() {
        assert_eq!(
            path("file:///tmp/my%20service"),
            Some("/tmp/my service".into())
        );
        assert_eq!(path("file:///tmp/caf%C3%A9"), Some("/tmp/café".into()));
        assert_eq!(path("file:///tmp/a%25b%23c"), Some("/tmp/a%b#c".into()));
        assert_eq!(path("file://localhost/srv/x"), Some("/srv/x".into()));
        let raw = path("file:///tmp/%FF").expect("a path");
        assert_eq!(raw.as_os_str().as_bytes(), b"/tmp/\xff");
    }

    #[test]
    fn only_local_file_uris_are_folders() {
        assert_eq!(path("untitled:Untitled-1"), None);
        assert_eq!(path("vscode-remote://ssh-remote+box/home/x"), None);
        assert_eq!(path("file://fileserver/share/x"), None);
    }

    #[test]
    fn a_folder_argument_is_a_path_or_a_file_uri() {
        assert_eq!(
            folder_argument("/tmp/my service"),
            Some("/tmp/my service".into())
        );
        assert_eq!(
            folder_argument("file:///tmp/my%20service"),
            Some("/tmp/my service".into())
        );
        assert_eq!(
            folder_argument("file:///tmp/my service"),
            Some("/tmp/my service".into())
        );
        assert_eq!(folder_argument("untitled:x"), None);
        assert_eq!(folder_argument("relative/dir"), None);
    }
}
