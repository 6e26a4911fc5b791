// The pages' own script (a file: their Content-Security-Policy runs no inline script and no
// eval, so htmx's trigger filters, which eval, are not used either).

// A form with data-confirm="question" is sent only once the question is answered yes.
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// The live parts refresh only while the page is in view (a hidden tab asks nothing).
document.addEventListener("htmx:confirm", function (event) {
  var trigger = event.detail.elt.getAttribute("hx-trigger") || "";
  if (document.visibilityState !== "visible" && trigger.indexOf("every ") === 0) {
    event.preventDefault();
  }
});

// A gallery's video plays while the pointer is over it.
document.addEventListener("mouseover", function (event) {
  var video = event.target.closest && event.target.closest("video[data-hover-play]");
  if (video) {
    video.play().catch(function () {});
  }
});
document.addEventListener("mouseout", function (event) {
  var video = event.target.closest && event.target.closest("video[data-hover-play]");
  if (video && !video.contains(event.relatedTarget)) {
    video.pause();
  }
});

// The gallery's keys: j or → moves to the next video, k or ← to the previous one (the one in
// focus plays); x selects it for the buttons; a approves it, r rejects it (that one alone),
// and the page comes back with the next video in focus, to judge one after the other.
document.addEventListener("keydown", function (event) {
  if (event.ctrlKey || event.metaKey || event.altKey) {
    return;
  }
  if (event.target.closest && event.target.closest("input, textarea, select, button, a")) {
    return;
  }
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card[data-id]"));
  if (!cards.length) {
    return;
  }
  var current = document.activeElement && document.activeElement.closest
    ? document.activeElement.closest(".card[data-id]")
    : null;
  var at = cards.indexOf(current);
  var key = event.key;
  if (key === "j" || key === "ArrowRight") {
    showCard(cards[Math.min(at + 1, cards.length - 1)]);
  } else if (key === "k" || key === "ArrowLeft") {
    showCard(cards[Math.max(at - 1, 0)]);
  } else if (key === "x" && current) {
    var box = current.querySelector("input[name=ids]");
    if (box) {
      box.checked = !box.checked;
    }
  } else if ((key === "a" || key === "r") && current) {
    judge(current, cards[at + 1], key === "a" ? "approved" : "rejected");
  } else {
    return;
  }
  event.preventDefault();
});

function showCard(card) {
  document.querySelectorAll("video[data-hover-play]").forEach(function (video) {
    video.pause();
  });
  card.focus();
  var video = card.querySelector("video");
  if (video) {
    video.play().catch(function () {});
  }
}

function judge(card, next, verdict) {
  var form = document.getElementById("review-form");
  var button = form && form.querySelector('button[name=verdict][value="' + verdict + '"]');
  if (!button) {
    return; // a read-only session has no buttons
  }
  form.querySelectorAll("input[name=ids]").forEach(function (box) {
    box.checked = box.value === card.getAttribute("data-id");
  });
  var back = form.querySelector("input[name=back]");
  back.value = back.value.split("#")[0] + (next ? "#" + encodeURIComponent(next.getAttribute("data-id")) : "");
  form.requestSubmit(button);
}

// Back from a verdict: the video the address names is in focus.
document.addEventListener("DOMContentLoaded", function () {
  var id;
  try {
    id = decodeURIComponent(window.location.hash.slice(1));
  } catch (malformed) {
    return; // an address typed by hand (`#%`): nothing to focus
  }
  if (!id) {
    return;
  }
  document.querySelectorAll(".card[data-id]").forEach(function (card) {
    if (card.getAttribute("data-id") === id) {
      card.focus();
    }
  });
});
