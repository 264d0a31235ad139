//! The command line: clap derive structs whose doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use protocol::{RoomId, UserId};

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
  chatctl status

Exit codes:
  0  success
  1  the daemon refused the request (no such user or room, already exists, invalid)
  2  usage error (bad arguments, unreadable configuration, password input refused)
  3  cannot reach the daemon (admin socket missing, refused or not permitted)
  4  the daemon failed (internal error, no or unreadable reply; see the daemon's log)";

/// Administer a chatd daemon over its admin socket.
///
/// chatctl finds the admin socket through the same configuration as chatd (--config or
/// CHATD_CONFIG, then CHATD_* variables), or takes it from --socket. Passwords are never sent
/// to the daemon: chatctl runs the client half of the OPAQUE registration itself.
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
    /// Show the daemon's version, uptime, sessions, listeners and store.
    Status,
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
    fn the_overview_in_help_lists_every_command() {
        let root = Cli::command();
        for group in root.get_subcommands() {
            let leaves: Vec<_> = group.get_subcommands().map(|c| c.get_name()).collect();
            if leaves.is_empty() {
                assert!(AFTER_HELP.contains(&format!("chatctl {}\n", group.get_name())));
            }
            for leaf in leaves {
                let line = format!("chatctl {} {leaf}", group.get_name());
                assert!(AFTER_HELP.contains(&line), "missing `{line}`");
            }
        }
    }
}
