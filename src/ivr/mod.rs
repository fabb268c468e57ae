//! Call flows: city resolution, working hours, menus, voice messages, survey.
