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
        format!(
            "version    {}\nuptime     {}\nsessions   {}\nlisteners  {}\nstore      {}",
            status.version,
            duration(status.uptime_secs),
            status.sessions,
            status.listeners.join(", "),
            status.store,
        )
    });
    Ok(())
}
