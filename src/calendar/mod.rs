//! China working-day calendar (holidays and 调休 workdays per year).
