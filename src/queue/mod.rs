//! ACD: agents, duty rosters, sign-in, strategies, announcements, overflow.
