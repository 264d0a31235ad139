//! Shared helpers: log a client in, read events until a condition holds.

use std::time::Duration;

use chatd_tests::wait::within;
use protocol::client::{Client, ClientOptions, Event};
use protocol::{ClientMsgId, Message, PresenceState, RoomId, UserId};

/// Generous: the machine running the tests is shared, and a deadline only bounds a hang.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

pub(crate) fn room(name: &str) -> RoomId {
    RoomId::parse(name).unwrap()
}

pub(crate) fn cmid(id: &str) -> ClientMsgId {
    ClientMsgId::parse(id).unwrap()
}

/// Connects and logs in.
pub(crate) async fn login(url: &str, name: &str, password: &str) -> Client {
    login_with(url, name, password, ClientOptions::default()).await
}

/// Connects with `options` and logs in.
pub(crate) async fn login_with(
    url: &str,
    name: &str,
    password: &str,
    options: ClientOptions,
) -> Client {
    let mut client = Client::connect(url, options).await.expect("connect");
    client.login(&user(name), password).await.expect("login");
    client
}

/// Reads events until `n` messages of `room` arrived; returns them (other events skipped).
pub(crate) async fn messages(client: &Client, room_id: &RoomId, n: usize) -> Vec<Message> {
    within("messages", TIMEOUT, async {
        let mut got = Vec::new();
        while got.len() < n {
            match client.next_event().await {
                Some(Event::Message(message)) if &message.room == room_id => got.push(message),
                Some(Event::Closed(code)) => {
                    panic!("connection closed ({code:?}) after {} messages", got.len())
                }
                None => panic!("event stream ended after {} messages", got.len()),
                Some(_) => {}
            }
        }
        got
    })
    .await
}

/// Reads events until one matches `pick`.
pub(crate) async fn event<T>(
    client: &Client,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    within(what, TIMEOUT, async {
        loop {
            let event = client
                .next_event()
                .await
                .unwrap_or_else(|| panic!("stream ended waiting for {what}"));
            if let Some(value) = pick(&event) {
                return value;
            }
            if let Event::Closed(code) = event {
                panic!("closed ({code:?}) waiting for {what}");
            }
        }
    })
    .await
}

/// Reads events until `name` is reported `state` in some room.
pub(crate) async fn presence(client: &Client, name: &str, state: PresenceState) {
    let who = user(name);
    event(client, &format!("{name} {state:?}"), |e| match e {
        Event::Presence {
            user: u, state: s, ..
        } if *u == who && *s == state => Some(()),
        _ => None,
    })
    .await;
}
