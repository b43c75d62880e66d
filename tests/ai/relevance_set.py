"""A small labelled set for choosing the search relevance threshold (``SEARCH_MAX_DISTANCE``).

Sixteen passages of a company handbook, in five themes with near neighbours inside each theme (a
password question must not pull in the laptop-encryption passage), and questions written in other
words than their passage. Each question names the passages that answer it; the last questions have
no answer in the handbook at all, and a good threshold returns nothing for them.

Each passage is short enough to be one chunk, so a passage's embedding is its chunk's embedding.
tests/ai/test_relevance.py checks the chosen default against this set; the sweep that chose it is
tests/benchmarks/bench_relevance.py.
"""

from __future__ import annotations

PASSAGES: dict[str, str] = {
    # security
    "passwords": (
        "Passwords for company systems must be at least fourteen characters long and are rotated every "
        "ninety days. Keep them in the approved password manager; never write them on paper or reuse one "
        "across services."
    ),
    "two-factor": (
        "Every employee account has two-factor authentication switched on. Use the authenticator app on your "
        "work phone; text-message codes are only a fallback when the phone is lost."
    ),
    "laptop-encryption": (
        "Company laptops ship with full-disk encryption enabled and lock themselves after five minutes "
        "without input. Do not disable the screen lock, even at home."
    ),
    "phishing": (
        "If an e-mail asks you to click a link and sign in, or to pay an unexpected invoice, forward it to "
        "the security team before doing anything. Suspicious messages are reported with the Report button."
    ),
    # leave
    "annual-leave": (
        "Full-time staff receive twenty-eight days of paid holiday a year, including public holidays. Up to "
        "five unused days may be carried over into the first quarter of the next year."
    ),
    "sick-leave": (
        "When you are ill, tell your manager before ten in the morning. From the fourth day of absence a "
        "doctor's note is required; sick days do not reduce your holiday allowance."
    ),
    "parental-leave": (
        "New parents are entitled to sixteen weeks of fully paid leave after a birth or an adoption, which "
        "can be split into two blocks within the child's first year."
    ),
    # money
    "expenses": (
        "Submit receipts for business expenses within thirty days through the finance portal. Meals while "
        "travelling are reimbursed up to forty-five euros a day; alcohol is never reimbursed."
    ),
    "travel-booking": (
        "Flights and hotels are booked through the travel desk, at least two weeks ahead where possible. "
        "Economy class is the rule for flights under six hours."
    ),
    "payroll": (
        "Salaries are paid on the twenty-fifth of each month. Payslips appear in the HR system two days "
        "earlier; report mistakes to payroll within the same month."
    ),
    # equipment
    "new-laptop": (
        "To replace a broken or slow computer, open a hardware request in the IT service desk. Standard "
        "machines are replaced every four years, or sooner when repairs would cost more."
    ),
    "printing": (
        "Printers on every floor release a job only when you tap your badge on the reader, so confidential "
        "pages never sit in the tray. Colour printing needs a manager's approval."
    ),
    "vpn": (
        "Outside the office, connect to the VPN before opening internal tools such as the wiki or the HR "
        "system. The client starts automatically at login on company laptops."
    ),
    # office
    "office-hours": (
        "The office building opens at seven in the morning and closes at eight in the evening on weekdays. "
        "Weekend access requires a request to facilities two days in advance."
    ),
    "parking": (
        "The underground car park has forty spaces allocated by monthly lottery. Bicycle racks and showers "
        "are next to the staff entrance on the north side."
    ),
    "desk-booking": (
        "Desks are shared: reserve one in the booking app up to a week ahead and clear it at the end of the "
        "day. Quiet zones on the third floor are for focused work without calls."
    ),
}

# (question, the passages that answer it); an empty set means the handbook has no answer.
QUESTIONS: list[tuple[str, set[str]]] = [
    ("How often do I have to change my password?", {"passwords"}),
    ("Can I store my login credentials in a notebook?", {"passwords"}),
    ("What do I use to get the second login code?", {"two-factor"}),
    ("I lost my phone, how do I receive my sign-in codes?", {"two-factor"}),
    ("Is the hard drive of my work computer protected if it gets stolen?", {"laptop-encryption"}),
    ("Am I allowed to turn off the automatic screen lock?", {"laptop-encryption"}),
    ("I received a strange email asking me to pay a bill, what should I do?", {"phishing"}),
    ("How many vacation days do I get per year?", {"annual-leave"}),
    ("Can I keep holidays I did not take for next year?", {"annual-leave"}),
    ("I woke up with a fever, who do I need to inform?", {"sick-leave"}),
    ("When do I need a medical certificate for being off work?", {"sick-leave"}),
    ("How long is maternity or paternity leave?", {"parental-leave"}),
    ("We are adopting a child; is there paid time off?", {"parental-leave"}),
    ("How do I get reimbursed for a client dinner?", {"expenses"}),
    ("Will the company pay for wine with my meal on a business trip?", {"expenses"}),
    ("Who books my plane tickets for a conference?", {"travel-booking"}),
    ("Can I fly business class to a meeting in Berlin?", {"travel-booking"}),
    ("On which day is my salary transferred?", {"payroll"}),
    ("Where can I find my payslip?", {"payroll"}),
    ("My computer is very slow and old, how do I get a new one?", {"new-laptop"}),
    ("How do I collect my print job from the printer?", {"printing"}),
    ("Can I print in colour?", {"printing"}),
    ("How can I reach the internal wiki while working from home?", {"vpn"}),
    ("What time does the building open?", {"office-hours"}),
    ("Can I come into the office on a Saturday?", {"office-hours", "desk-booking"}),
    ("Is there somewhere to leave my bike?", {"parking"}),
    ("How do I get a parking space?", {"parking"}),
    ("How do I reserve a desk for tomorrow?", {"desk-booking"}),
    ("Where can I work without being disturbed by phone calls?", {"desk-booking"}),
    ("What security rules apply to my accounts and devices?", {"passwords", "two-factor", "laptop-encryption"}),
    # No answer in the handbook: a good threshold returns nothing.
    ("What is the recipe for the canteen's lasagne?", set()),
    ("Who won the football match last night?", set()),
    ("How tall is the Eiffel Tower?", set()),
    ("What is the company's share price today?", set()),
    ("How do I train my puppy to sit?", set()),
    ("What is the capital of Australia?", set()),
    ("Explain how photosynthesis works.", set()),
    ("Which programming language should I learn first?", set()),
]

TOP_K = 5  # what chat retrieves (CHAT_CONTEXT_CHUNKS) and the search API returns by default


def relevance_quality(ranked: list[list[tuple[str, float]]], threshold: float) -> dict[str, float]:
    """How a threshold does on the set, given each question's ``TOP_K`` nearest (passage, distance).

    precision and recall count (question, passage) pairs kept by the threshold; ``answered`` is the
    share of answerable questions left with at least one right passage, ``silent`` the share of
    unanswerable ones left with none.
    """
    kept_right = kept_wrong = relevant = answered = silent = 0
    answerable = sum(1 for _, wanted in QUESTIONS if wanted)
    for (_, wanted), nearest in zip(QUESTIONS, ranked, strict=True):
        kept = {name for name, distance in nearest[:TOP_K] if distance <= threshold}
        relevant += len(wanted)
        kept_right += len(kept & wanted)
        kept_wrong += len(kept - wanted)
        answered += bool(wanted and kept & wanted)
        silent += not wanted and not kept
    precision = kept_right / (kept_right + kept_wrong) if kept_right + kept_wrong else 1.0
    recall = kept_right / relevant
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "answered": answered / answerable,
        "silent": silent / (len(QUESTIONS) - answerable),
    }
