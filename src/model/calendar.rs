//! A systemd calendar expression (`OnCalendar=`, systemd.time(7)), parsed
//! once so that a `backup`'s `every` can only ever be one line that systemd
//! reads as the user meant.
//!
//! The common forms are accepted: the shorthands (`daily`, `weekly`, …)
//! and `[WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]]`, each field
//! `*`, a number, a range `A..B`, a repetition `/STEP`, or a comma list
//! of these. Time zones and the `~` last-day form are not: a user who
//! needs them hears so at the value, never from a timer that never fires.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Calendar(String);

/// The shorthands systemd.time(7) lists.
const SHORTHANDS: &[&str] = &[
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
];

const WEEKDAYS: &[(&str, &str)] = &[
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

const HELP: &str =
    "write a systemd calendar expression such as `daily`, `*-*-* 03:00:00` or `Mon..Fri 02:00`";

impl Calendar {
    pub fn parse(s: &str) -> Result<Calendar, String> {
        if let Some(c) = s.chars().find(|c| c.is_control()) {
            return Err(format!(
                "a calendar expression may not hold the control character {:?}",
                c
            ));
        }
        let text = s.trim();
        if text.is_empty() {
            return Err(format!("the calendar expression is empty; {HELP}"));
        }
        if SHORTHANDS.contains(&text.to_ascii_lowercase().as_str()) {
            return Ok(Calendar(text.to_ascii_lowercase()));
        }
        let bad = |why: String| format!("`{s}` is not a calendar expression: {why}; {HELP}");
        let mut words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
        if words
            .first()
            .is_some_and(|w| w.starts_with(|c: char| c.is_ascii_alphabetic()))
        {
            weekdays(words.remove(0)).map_err(bad)?;
        }
        let (mut date, mut time) = (None, None);
        for word in words {
            if word.contains(':') && time.is_none() {
                time = Some(word);
            } else if word.contains('-') && date.is_none() && time.is_none() {
                date = Some(word);
            } else {
                return Err(bad(format!("`{word}` is neither a date nor a time")));
            }
        }
        if let Some(date) = date {
            let parts: Vec<&str> = date.split('-').collect();
            let fields: &[(&str, u32, u32)] = match parts.len() {
                2 => &[("month", 1, 12), ("day", 1, 31)],
                3 => &[("year", 1970, 2199), ("month", 1, 12), ("day", 1, 31)],
                _ => return Err(bad(format!("the date `{date}` is not YEAR-MONTH-DAY"))),
            };
            for (part, (what, min, max)) in parts.iter().zip(fields) {
                field(part, what, *min, *max).map_err(bad)?;
            }
        }
        if let Some(time) = time {
            let parts: Vec<&str> = time.split(':').collect();
            if !(2..=3).contains(&parts.len()) {
                return Err(bad(format!(
                    "the time `{time}` is not HOUR:MINUTE[:SECOND]"
                )));
            }
            let fields = [("hour", 0, 23), ("minute", 0, 59), ("second", 0, 59)];
            for (part, (what, min, max)) in parts.iter().zip(fields) {
                field(part, what, min, max).map_err(bad)?;
            }
        }
        Ok(Calendar(
            text.split_whitespace().collect::<Vec<_>>().join(" "),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `Mon`, `Mon..Fri`, `Sat,Sun`: names or their three-letter forms.
fn weekdays(word: &str) -> Result<(), String> {
    for item in word.split(',') {
        for day in item.split("..") {
            let day = day.to_ascii_lowercase();
            if !WEEKDAYS
                .iter()
                .any(|(short, long)| day == *short || day == *long)
            {
                return Err(format!("`{day}` is not a day of the week"));
            }
        }
        if item.split("..").count() > 2 {
            return Err(format!("`{item}` is not a range of days"));
        }
    }
    Ok(())
}

/// One field: `*`, or a comma list of `N`, `A..B`, `N/STEP`, `*/STEP`.
fn field(part: &str, what: &str, min: u32, max: u32) -> Result<(), String> {
    if part == "*" {
        return Ok(());
    }
    for item in part.split(',') {
        let (values, step) = match item.split_once('/') {
            Some((values, step)) => (values, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(n) if n >= 1 => {}
                _ => return Err(format!("`{step}` is not a repetition of the {what}")),
            }
        }
        if values == "*" && step.is_some() {
            continue;
        }
        let bounds: Vec<&str> = values.split("..").collect();
        if bounds.len() > 2 {
            return Err(format!("`{values}` is not a range of the {what}"));
        }
        let mut numbers = Vec::new();
        for b in bounds {
            let n = b
                .parse::<u32>()
                .ok()
                .filter(|_| b.bytes().all(|c| c.is_ascii_digit()))
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("the {what} `{b}` is not a number from {min} to {max}"))?;
            numbers.push(n);
        }
        if numbers.len() == 2 && numbers[0] > numbers[1] {
            return Err(format!("the {what} range `{values}` ends before it starts"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Calendar;

    #[test]
    fn the_common_forms_are_accepted() {
        for ok in [
            "daily",
            "Hourly",
            "weekly",
            "monthly",
            "*-*-* 03:00:00",
            "Mon..Fri 02:00",
            "Sat,Sun 04:30",
            "Mon *-*-* 00:00:00",
            "2026-01-01",
            "*-*-01 00:00",
            "*:0/15",
            "*-*-* 0/6:00",
            "Monday 1,13:00",
            "*-02..04-1..7 8..18:00",
        ] {
            assert!(
                Calendar::parse(ok).is_ok(),
                "{ok}: {:?}",
                Calendar::parse(ok)
            );
        }
        assert_eq!(
            Calendar::parse("  Mon   02:00 ").unwrap().as_str(),
            "Mon 02:00"
        );
    }

    #[test]
    fn garbage_and_control_characters_are_refused() {
        for bad in [
            "",
            "sometimes",
            "daily\nExecStart=/bin/sh",
            "Mon..Fri 25:00",
            "*-13-* 00:00",
            "*-*-* 00:60",
            "Funday 02:00",
            "*-*-* 03:00 04:00",
            "1-2-3-4",
            "*:*/0",
            "5..1:00",
            "03:00 Mon",
        ] {
            assert!(Calendar::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            Calendar::parse("daily\n").unwrap_err(),
            "a calendar expression may not hold the control character '\\n'"
        );
    }
}
