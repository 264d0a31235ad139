//! `chatctl man`: the manual page in roff, generated from the same clap definition as
//! `--help`: one page for chatctl on standard output, or with `--output DIR` one page per
//! command (`chatctl.1`, `chatctl-user.1`, `chatctl-user-add.1`, ...) for installing under
//! `man1/`.

use std::io::Write as _;
use std::path::Path;

use clap::CommandFactory as _;

use crate::cli::Cli;
use crate::failure::Failure;

/// Prints chatctl's page, or writes every command's page into `output` and lists the files.
pub(crate) fn run(output: Option<&Path>) -> Result<(), Failure> {
    let mut root = Cli::command().disable_help_subcommand(true);
    // Building names each subcommand after its parents (`chatctl-user-add`), which the page
    // titles and file names use.
    root.build();
    let Some(dir) = output else {
        let page = render(root)?;
        return write_stdout(page.as_bytes());
    };
    std::fs::create_dir_all(dir)
        .map_err(|error| Failure::Local(format!("cannot create {}: {error}", dir.display())))?;
    let mut written = Vec::new();
    write_pages(root, dir, &mut written)?;
    let mut listing = String::new();
    for path in written {
        listing.push_str(&path);
        listing.push('\n');
    }
    write_stdout(listing.as_bytes())
}

/// Writes the page of `command` and of each of its subcommands into `dir`.
fn write_pages(
    command: clap::Command,
    dir: &Path,
    written: &mut Vec<String>,
) -> Result<(), Failure> {
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_pages(sub.clone(), dir, written)?;
    }
    let file = dir.join(clap_mangen::Man::new(command.clone()).get_filename());
    let page = render(command)?;
    std::fs::write(&file, page)
        .map_err(|error| Failure::Local(format!("cannot write {}: {error}", file.display())))?;
    written.push(file.display().to_string());
    Ok(())
}

/// The page of `command` as roff text, opening with its `.TH` title line.
fn render(command: clap::Command) -> Result<String, Failure> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .map_err(|error| Failure::Local(format!("cannot render the manual page: {error}")))?;
    let page = String::from_utf8(page)
        .map_err(|error| Failure::Local(format!("cannot render the manual page: {error}")))?;
    Ok(title_first(page))
}

/// man-pages(7) opens a page with `.TH`; roff's writer puts its definition of the apostrophe
/// string (`.ie`/`.el .ds Aq`) before it. The definition only has to precede the first use,
/// so it moves to just after the title line.
fn title_first(page: String) -> String {
    let Some(title_at) = page.find("\n.TH ").map(|at| at + 1) else {
        return page;
    };
    let (preamble, rest) = page.split_at(title_at);
    if !preamble
        .lines()
        .all(|line| line.starts_with(".ie ") || line.starts_with(".el "))
    {
        return page;
    }
    let title_end = rest.find('\n').map_or(rest.len(), |at| at + 1);
    let (title, body) = rest.split_at(title_end);
    format!("{title}{preamble}{body}")
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|error| Failure::Local(format!("cannot write to standard output: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_line_comes_first() {
        let page = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.TH chatctl 1\n.SH NAME\n";
        assert_eq!(
            title_first(page.to_owned()),
            ".TH chatctl 1\n.ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.SH NAME\n"
        );
    }

    #[test]
    fn a_page_without_the_preamble_is_left_alone() {
        for page in [
            ".TH chatctl 1\n.SH NAME\n",
            ".\\\" comment\n.TH chatctl 1\n",
            "",
        ] {
            assert_eq!(title_first(page.to_owned()), page);
        }
    }
}
