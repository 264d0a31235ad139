//! `chatctl status`: what the daemon reports about itself.

use protocol::admin::{AdminReply, AdminRequest};

use super::{Hints, check, unexpected};
use crate::admin_client::Admin;
use crate::failure::Failure;
use crate::output::{Output, duration};

pub(super) async fn run(admin: &mut Admin, output: Output) -> Result<(), Failure> {
    let hints = Hints {
        not_found: "",
        already_exists: "",
    };
    let reply = check(admin.request(&AdminRequest::Status).await?, hints)?;
    let AdminReply::Status(status) = &reply else {
        return Err(unexpected("status", &reply));
    };
    output.print(&reply, || {
        // The mean batch size says how well group commit is working: 1 means every send paid
        // for its own transaction.
        let batches = match status.store_commits {
            0 => "no commits yet".to_owned(),
            commits => format!(
                "{commits} commits, {:.1} sends per commit",
                status.store_committed_sends as f64 / commits as f64
            ),
        };
        format!(
            "version    {}\nuptime     {}\nsessions   {}\nlisteners  {}\nstore      {}\nbatches    \
             {batches}",
            status.version,
            duration(status.uptime_secs),
            status.sessions,
            status.listeners.join(", "),
            status.store,
        )
    });
    Ok(())
}
