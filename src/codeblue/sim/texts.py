"""Text pools for simulated traffic: questions, answers and complaints by theme.

Complaints come in themes so a content-based clusterer has something real to find: a fault produces
complaints about its own topic, while the background produces generic, unrelated grumbles.
"""

from __future__ import annotations

GENERIC_COMPLAINTS = (
    "this is not helpful",
    "the bot is useless",
    "I want to talk to a human",
    "that answer was too long",
    "why is this so slow",
    "the chat keeps asking me the same thing",
    "not what I asked",
    "terrible experience",
    "can you just connect me to support",
    "I don't understand the answer",
    "the assistant misunderstood me",
    "your app is confusing",
)

#: Fault themes: a complaint template per theme, filled with a varying detail.
THEMES: dict[str, tuple[str, ...]] = {
    "refund_wrong": (
        "the assistant said my {item} was refundable but the refund was rejected",
        "told me I would get a full refund for my {item}, then support said no refund applies",
        "wrong refund information: it promised a refund for a non-refundable {item}",
        "refund advice was wrong, I was told to cancel my {item} and now I lost the money",
        "the bot gave me incorrect refund guidance about my {item}",
    ),
    "finance_wrong": (
        "the answer about my {item} interest rate was simply wrong",
        "it quoted the wrong APR for my {item}",
        "financial advice about my {item} contradicts your own terms",
        "the assistant miscalculated the fees on my {item}",
    ),
    "stale_citation": (
        "the cited policy page for {item} is outdated",
        "it linked to an old version of the {item} terms",
        "the source it quoted about {item} no longer exists",
        "out of date information about {item}, the citation is from last year",
    ),
    "repayment_wrong": (
        "the repayment plan it suggested for my {item} doesn't match my statement",
        "got two different repayment amounts for my {item} in the same chat",
        "inconsistent repayment advice on my {item}",
        "it told me to skip a {item} payment without penalty, which is false",
    ),
    "tool_broken": (
        "the support ticket about my {item} was never created",
        "it said it opened a ticket for my {item} but nothing happened",
        "ticket creation failed for my {item} request",
    ),
    "wrong_account": (
        "the assistant changed the {item} on someone else's account",
        "I got a notification that my {item} was changed but I never asked",
        "it updated the wrong account's {item}",
    ),
    "refusing": (
        "the assistant refuses to answer a simple question about my {item}",
        "it keeps saying it can't help with my {item}",
        "why won't it answer anything about {item} anymore",
    ),
    "outage": (
        "the assistant shows an error every time I ask about my {item}",
        "error message again when asking about {item}",
        "it's down, can't get any answer about my {item}",
    ),
}

ITEMS = ("flight", "hotel booking", "subscription", "order", "loan", "credit card", "invoice", "mortgage",
         "laptop", "phone plan", "insurance policy", "gym membership")

QUESTIONS: dict[str, tuple[str, ...]] = {
    "refund-desk": ("Can I get a refund for my {item}?", "How long does a refund for my {item} take?",
                    "Is my {item} eligible for a refund?"),
    "repayment-advice": ("What is my next repayment for my {item}?", "Can I change the repayment date of my {item}?",
                         "How much do I still owe on my {item}?"),
    "finance-qa": ("What is the interest rate on my {item}?", "What fees apply to my {item}?",
                   "Explain the APR of my {item}."),
    "search-answers": ("What does the policy say about {item}?", "Where can I read the terms for my {item}?"),
    "support-desk": ("Please open a ticket about my {item}.", "My {item} is broken, can you help?"),
    "account-agent": ("Update the address on my {item} account.", "Change the e-mail for my {item}."),
}

ANSWERS = (
    "According to our policy, {item} purchases can be refunded within 30 days with the original receipt.",
    "Your {item} details are shown in your account under Billing; the current figure is listed there.",
    "I've checked the terms for your {item}: the standard conditions apply, see the linked policy.",
    "Done — I've taken care of your {item} request and you'll get a confirmation e-mail shortly.",
)
REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "I'm unable to provide information about that. Please contact support.",
    "As an AI assistant, I cannot assist with questions about {item}.",
)
