//! How a run's clients and rooms meet. With `stride = min(clients, rooms)`, client `c` is in
//! every room `r` with `r % stride == c % stride` and sends its messages to those rooms in
//! turn. So with more rooms than clients each room has one member and each client cycles
//! through several rooms; with more clients than rooms each client has one room, shared with
//! the others of its residue. Every room has at least one member and every client at least
//! one room.

use crate::correctness::RoomPlan;

/// The run's clients, rooms and messages per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) clients: usize,
    pub(crate) rooms: usize,
    pub(crate) messages: usize,
}

impl Layout {
    fn stride(&self) -> usize {
        self.clients.min(self.rooms).max(1)
    }

    /// The rooms of `client`, ascending.
    pub(crate) fn rooms_of(&self, client: usize) -> Vec<usize> {
        (client % self.stride()..self.rooms)
            .step_by(self.stride())
            .collect()
    }

    /// The members of `room`, ascending.
    pub(crate) fn members_of(&self, room: usize) -> Vec<usize> {
        (room % self.stride()..self.clients)
            .step_by(self.stride())
            .collect()
    }

    /// The room that message `index` of `client` goes to.
    pub(crate) fn room_of(&self, client: usize, index: usize) -> usize {
        let turns = self.rooms_of(client).len().max(1);
        client % self.stride() + (index % turns) * self.stride()
    }

    /// Which messages `room` carries.
    pub(crate) fn plan(&self, room: usize) -> RoomPlan {
        let members: Vec<_> = self
            .members_of(room)
            .into_iter()
            .map(|client| {
                let rooms = self.rooms_of(client);
                let place = rooms.iter().position(|r| *r == room).unwrap_or(0);
                (client, rooms.len(), place)
            })
            .collect();
        RoomPlan::new(&members, self.messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message goes to exactly one room, a room its sender is in, and that room's plan
    /// carries it.
    fn check(layout: Layout) {
        let plans: Vec<RoomPlan> = (0..layout.rooms).map(|room| layout.plan(room)).collect();
        let mut total = 0;
        for room in 0..layout.rooms {
            assert!(
                !layout.members_of(room).is_empty(),
                "{layout:?} room {room}"
            );
        }
        for client in 0..layout.clients {
            let rooms = layout.rooms_of(client);
            assert!(!rooms.is_empty(), "{layout:?} client {client}");
            for room in &rooms {
                assert!(layout.members_of(*room).contains(&client));
            }
            for index in 0..layout.messages {
                let room = layout.room_of(client, index);
                assert!(rooms.contains(&room), "{layout:?} {client}/{index}");
                for (other, plan) in plans.iter().enumerate() {
                    assert_eq!(plan.slot(client, index).is_some(), other == room);
                }
            }
        }
        for plan in &plans {
            total += plan.len();
        }
        assert_eq!(total, layout.clients * layout.messages, "{layout:?}");
    }

    #[test]
    fn every_message_has_one_room_whatever_the_shape() {
        for (clients, rooms) in [(1, 1), (16, 1), (1, 100), (16, 100), (256, 100), (3, 7)] {
            check(Layout {
                clients,
                rooms,
                messages: 23,
            });
        }
    }

    #[test]
    fn more_rooms_than_clients_cycles_each_client_through_its_rooms() {
        let layout = Layout {
            clients: 16,
            rooms: 100,
            messages: 10,
        };
        assert_eq!(layout.rooms_of(3), [3, 19, 35, 51, 67, 83, 99]);
        assert_eq!(layout.members_of(35), [3]);
        assert_eq!(layout.room_of(3, 0), 3);
        assert_eq!(layout.room_of(3, 8), 19);
    }

    #[test]
    fn more_clients_than_rooms_shares_each_room() {
        let layout = Layout {
            clients: 256,
            rooms: 100,
            messages: 10,
        };
        assert_eq!(layout.rooms_of(203), [3]);
        assert_eq!(layout.members_of(3), [3, 103, 203]);
    }
}
