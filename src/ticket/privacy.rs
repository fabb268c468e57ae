//! Callers' private information (TK-PRIVACY, H-12-4): masked for every role that does
//! not need to contact the caller.
//!
//! One policy everywhere a caller's number leaves the server for someone who may not
//! see it (API answers, console events, CSV, INFO/WARN log lines): [`mask_phone`].
//! Full numbers go only to the roles of [`can_see_contact`], and every answer that
//! carries one is written to the audit log naming the records it returned.

use super::model::{Actor, Contact, Role};

/// Numbers of at least this many characters keep their first 3 (the mobile prefix or
/// the area code, `138` / `053`) besides the last 4.
const KEEP_HEAD_FROM: usize = 11;
/// At most this many characters are kept at the end.
const KEEP_TAIL: usize = 4;
/// At least this many characters are always hidden (all of a number this short or
/// shorter).
const HIDE_AT_LEAST: usize = 4;

/// The caller's number as shown to someone who may not see it; every hidden character
/// becomes `*`, so the length stays:
///
/// - 11 or more characters: the first 3 and the last 4 kept, `13812345678` →
///   `138****5678`, `053188886666` → `053*****6666` (at least 4 hidden);
/// - 5 to 10: only the end kept, at most the last 4 and never more than `len - 4`,
///   `82345678` → `****5678`, `1234567` → `****567`, `12345` → `****5`;
/// - 4 or fewer (an extension): all hidden, `1001` → `****`.
///
/// So at least 4 characters are hidden in any number, and never more than 7 shown.
#[must_use]
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    let len = chars.len();
    let tail = KEEP_TAIL.min(len.saturating_sub(HIDE_AT_LEAST));
    let head = if len >= KEEP_HEAD_FROM { 3 } else { 0 };
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < head || i + tail >= len { *c } else { '*' })
        .collect()
}

/// `张三` → `张*`, `欧阳娜娜` → `欧***`: the first character (the surname, usually)
/// kept; a one-character name is fully masked.
#[must_use]
pub fn mask_name(name: &str) -> String {
    let count = name.chars().count();
    match name.chars().next() {
        Some(first) if count > 1 => {
            let mut masked = String::from(first);
            masked.extend(std::iter::repeat_n('*', count - 1));
            masked
        }
        Some(_) => "*".to_owned(),
        None => String::new(),
    }
}

/// Whether one of the actor's roles needs the caller's real name and number to work
/// the order: dispatch (转办, corrects and forwards the contact), the handling unit
/// (承办, contacts the caller about the case) and callback staff (回访, call back).
///
/// Agents (值班) do not: the caller is on the line, the screen-pop and the call's
/// orders come masked, and an order opened from a call takes the number that called
/// in without the agent seeing it. Heads, reviewers, supervisors and administrators see
/// masked values too. Any of them may still reveal one order's contact, audited
/// (`POST /api/orders/{id}/reveal_contact`).
#[must_use]
pub fn can_see_contact(actor: &Actor) -> bool {
    actor.roles.iter().any(|role| {
        matches!(
            role,
            Role::Dispatcher | Role::UnitHandler | Role::CallbackStaff
        )
    })
}

/// Whether the actor may look records up by a number they already have: the roles of
/// [`can_see_contact`], and agents (the number a caller states on the line finds the
/// caller's earlier orders and calls). The answer shows the numbers as the actor may
/// see them, so an agent's search returns them masked.
#[must_use]
pub fn may_search_by_number(actor: &Actor) -> bool {
    can_see_contact(actor) || actor.roles.contains(&Role::Agent)
}

/// The contact as `actor` may see it.
#[must_use]
pub fn contact_for(actor: &Actor, contact: &Contact) -> Contact {
    if can_see_contact(actor) {
        contact.clone()
    } else {
        Contact {
            name: mask_name(&contact.name),
            phone: mask_phone(&contact.phone),
        }
    }
}
