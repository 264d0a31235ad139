//! The command line: clap derive structs whose doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use protocol::{RoomId, UserId};

use crate::record::Format;
use crate::timestamp;

/// Shown at the end of `--help`: every command at a glance, and the exit codes (also
/// documented in `main.rs`).
pub(crate) const AFTER_HELP: &str = "\
Commands at a glance:
  chatctl user add NAME [--password-stdin]
  chatctl user passwd NAME [--password-stdin]
  chatctl user list
  chatctl user disable NAME
  chatctl user enable NAME
  chatctl room create NAME [--private]
  chatctl room list
  chatctl room add-member ROOM USER
  chatctl room remove-member ROOM USER
  chatctl room set-retention ROOM DAYS|forever|default
  chatctl session list [--user USER]
  chatctl session kick ID | --user USER
  chatctl history export [--room ROOM]... [--since TIME] [--until TIME] [--format jsonl|csv] [--output FILE]
  chatctl history import FILE|-
  chatctl db migrate
  chatctl db status
  chatctl status
  chatctl completions bash|zsh|fish|elvish|powershell
  chatctl man [--output DIR]

Exit codes:
  0  success
  1  the daemon refused the request (no such user, room or session, already exists, invalid)
  2  usage error (bad arguments, unreadable configuration, password input refused)
  3  cannot reach the daemon (admin socket missing, refused or not permitted)
  4  the daemon failed (internal error, no or unreadable reply; see the daemon's log)";

/// Administer a chatd daemon over its admin socket.
///
/// chatctl finds the admin socket through the same configuration as chatd (--config or
/// CHATD_CONFIG, then CHATD_* variables), or takes it from --socket. Passwords are never sent
/// to the daemon: chatctl runs the client half of the OPAQUE registration itself. `db`
/// commands open the database named by that configuration directly, without the daemon.
#[derive(Debug, Parser)]
#[command(name = "chatctl", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// chatd configuration file, read to find the admin socket.
    #[arg(long, global = true, env = "CHATD_CONFIG", value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,

    /// Admin socket to use instead of the one in the configuration.
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,

    /// Print the daemon's reply as JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage rooms and their members.
    #[command(subcommand)]
    Room(RoomCommand),
    /// List and close the daemon's live sessions (client connections).
    #[command(subcommand)]
    Session(SessionCommand),
    /// Show the daemon's version, uptime, sessions, listeners and store.
    Status,
    /// Export and import message history.
    #[command(subcommand)]
    History(HistoryCommand),
    /// Apply or list database schema migrations (opens the database itself; for
    /// `store.run_migrations = false`).
    #[command(subcommand)]
    Db(DbCommand),
    /// Print the shell completion script for SHELL to standard output.
    ///
    /// Install it where the shell looks, e.g. for bash
    /// `chatctl completions bash > /usr/local/share/bash-completion/completions/chatctl`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to standard output.
    Man {
        /// Instead, write one page per command (chatctl.1, chatctl-user.1,
        /// chatctl-user-add.1, ...) into DIR, created if missing, and list the files.
        #[arg(long, value_name = "DIR")]
        output: Option<PathBuf>,
    },
}

/// `chatctl user ...`
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user; asks for the password twice.
    Add {
        /// The user name: 1-32 of a-z, 0-9, '.', '_', '-', starting with a letter or digit.
        name: UserId,
        /// Read the password from the first line of standard input instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Replace a user's password; asks for the new one twice.
    Passwd {
        /// The user name.
        name: UserId,
        /// Read the password from the first line of standard input instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users with their status and live sessions.
    List,
    /// Disable a user and close their live sessions.
    Disable {
        /// The user name.
        name: UserId,
    },
    /// Enable a disabled user.
    Enable {
        /// The user name.
        name: UserId,
    },
}

/// `chatctl room ...`
#[derive(Debug, Subcommand)]
pub(crate) enum RoomCommand {
    /// Create a room.
    Create {
        /// The room name: 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit.
        name: RoomId,
        /// Only members may join.
        #[arg(long)]
        private: bool,
    },
    /// List rooms.
    List,
    /// Add a member to a (private) room.
    AddMember {
        /// The room name.
        room: RoomId,
        /// The user name.
        user: UserId,
    },
    /// Remove a member from a room.
    RemoveMember {
        /// The room name.
        room: RoomId,
        /// The user name.
        user: UserId,
    },
    /// Set how many days of a room's history are kept, overriding the daemon's
    /// `retention.days`.
    SetRetention {
        /// The room name (direct rooms too: dm:USER:USER).
        room: RoomId,
        /// Days of history to keep; `forever` (or 0) keeps everything; `default` returns the
        /// room to the daemon's `retention.days`.
        #[arg(value_name = "DAYS|forever|default", value_parser = parse_retention)]
        days: Retention,
    },
}

/// A room's retention as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retention {
    /// Keep this many days; 0 keeps everything.
    Days(u32),
    /// Follow the daemon's `retention.days`.
    Default,
}

impl Retention {
    /// The `days` field of `room_set_retention`.
    pub(crate) fn to_days(self) -> Option<u32> {
        match self {
            Self::Days(days) => Some(days),
            Self::Default => None,
        }
    }
}

fn parse_retention(text: &str) -> Result<Retention, String> {
    match text {
        "default" => Ok(Retention::Default),
        "forever" => Ok(Retention::Days(0)),
        days => days.parse().map(Retention::Days).map_err(|_| {
            format!(
                "expected a number of days (0 to {}), `forever` or `default`",
                u32::MAX
            )
        }),
    }
}

/// `chatctl session ...`: the sessions of the daemon that owns the admin socket; with several
/// nodes, ask each.
#[derive(Debug, Subcommand)]
pub(crate) enum SessionCommand {
    /// List live sessions, oldest first.
    ///
    /// Each shows its id, user ("-" before login), transport, the client's address, when it
    /// connected (UTC) and how many rooms it receives events of.
    List {
        /// Only this user's sessions.
        #[arg(long, value_name = "USER")]
        user: Option<UserId>,
    },
    /// Close a session, or every session of a user, with close code 4006 (kicked).
    ///
    /// The account is not affected: the client may reconnect and log in again. To keep a user
    /// out, use `chatctl user disable`.
    Kick(KickArgs),
}

/// `chatctl session kick` arguments: a session id or `--user`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct KickArgs {
    /// The session id, as `chatctl session list` shows it (s1a).
    #[arg(value_name = "ID")]
    pub(crate) id: Option<String>,
    /// Close every session of this user instead.
    #[arg(long, value_name = "USER")]
    pub(crate) user: Option<UserId>,
}

/// `chatctl history ...`
#[derive(Debug, Subcommand)]
pub(crate) enum HistoryCommand {
    /// Export messages in (room, seq) order as JSON lines (what `import` reads) or CSV.
    ///
    /// Each record holds room, seq, sender, body, ts (RFC 3339, UTC, milliseconds) and cmid.
    /// The export streams: memory stays small however long the history. A progress line is
    /// shown on stderr when it is a terminal.
    Export(ExportArgs),
    /// Import messages from a JSON-lines export (FILE, or - for standard input).
    ///
    /// Messages keep their room, seq, sender, body, time and cmid; missing rooms are created.
    /// A message whose (room, seq) is already stored is skipped, so importing twice stores
    /// nothing new. A bad line stops the import there: the lines before it are imported,
    /// nothing from it on is.
    Import {
        /// The export to read; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `chatctl history export` arguments.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Only this room; repeat for several. Default: every room, direct rooms (dm:USER:USER)
    /// included.
    #[arg(long = "room", value_name = "ROOM")]
    pub(crate) rooms: Vec<RoomId>,
    /// Only messages committed at or after TIME: RFC 3339 (2026-11-25T12:00:00Z, offsets
    /// allowed) or a date (2026-11-25, midnight UTC).
    #[arg(long, value_name = "TIME", value_parser = timestamp::parse_argument_ms)]
    pub(crate) since: Option<i64>,
    /// Only messages committed before TIME (exclusive); same forms as --since.
    #[arg(long, value_name = "TIME", value_parser = timestamp::parse_argument_ms)]
    pub(crate) until: Option<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub(crate) format: Format,
    /// Write to FILE (created or replaced, flushed to disk at the end; removed if the export
    /// fails) instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

/// `chatctl db ...`: these read the configuration for `store.url` (or the SQLite file in
/// `data_dir`) and connect to the database directly; the daemon need not run.
#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Apply the pending schema migrations this chatctl carries (those of the chatd of the
    /// same version) and list what was applied.
    Migrate,
    /// List the schema migrations: applied or pending.
    Status,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn retention_takes_days_forever_or_default() {
        assert_eq!(parse_retention("30"), Ok(Retention::Days(30)));
        assert_eq!(parse_retention("0"), Ok(Retention::Days(0)));
        assert_eq!(parse_retention("forever"), Ok(Retention::Days(0)));
        assert_eq!(parse_retention("default"), Ok(Retention::Default));
        assert_eq!(Retention::Default.to_days(), None);
        for bad in ["-1", "30d", "", "4294967296"] {
            assert!(parse_retention(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_overview_in_help_lists_every_command() {
        let root = Cli::command();
        for group in root.get_subcommands() {
            let leaves: Vec<_> = group.get_subcommands().map(|c| c.get_name()).collect();
            if leaves.is_empty() {
                let line = format!("chatctl {}", group.get_name());
                assert!(
                    AFTER_HELP.contains(&format!("{line}\n"))
                        || AFTER_HELP.contains(&format!("{line} ")),
                    "missing `{line}`"
                );
            }
            for leaf in leaves {
                let line = format!("chatctl {} {leaf}", group.get_name());
                assert!(AFTER_HELP.contains(&line), "missing `{line}`");
            }
        }
    }
}
