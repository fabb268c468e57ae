//! Callers' private information (TK-PRIVACY, H-12-4): masked for every role that does
//! not need to contact the caller.

use super::model::{Actor, Contact, Role};

/// `13812345678` → `138****5678`: first 3 and last 4 characters kept when there are
/// at least 8; shorter numbers keep only the last 2.
#[must_use]
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    let (head, tail) = if chars.len() >= 8 {
        (3, 4)
    } else {
        (0, chars.len().min(2))
    };
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < head || i + tail >= chars.len() {
                *c
            } else {
                '*'
            }
        })
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

/// Whether one of the actor's roles needs the caller's real name and number: those
/// who talk to the caller (agents, dispatch, the handling unit, callback staff).
/// Heads, reviewers, supervisors and administrators see masked values.
#[must_use]
pub fn can_see_contact(actor: &Actor) -> bool {
    actor.roles.iter().any(|role| {
        matches!(
            role,
            Role::Agent | Role::Dispatcher | Role::UnitHandler | Role::CallbackStaff
        )
    })
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
