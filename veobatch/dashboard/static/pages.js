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
// Enter or o shows the focused one larger (see showLarge); inside, the same keys act on the
// video shown, and a verdict brings the page back with the next one shown larger.
document.addEventListener("keydown", function (event) {
  if (event.ctrlKey || event.metaKey || event.altKey) {
    return;
  }
  var box = document.getElementById("lightbox");
  var large = Boolean(box && box.open);
  // (In the larger view, its links and buttons take Enter and Space, not the letters.)
  var own = large ? "input, textarea, select" : "input, textarea, select, button, a";
  if (event.target.closest && event.target.closest(own)) {
    return;
  }
  var key = event.key;
  if (large && event.target.tagName === "VIDEO" && key.indexOf("Arrow") === 0) {
    return; // the video's own seeking
  }
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card[data-id]"));
  if (!cards.length) {
    return;
  }
  var current = large
    ? cardOf(box.getAttribute("data-id"))
    : document.activeElement && document.activeElement.closest
      ? document.activeElement.closest(".card[data-id]")
      : null;
  var at = cards.indexOf(current);
  var show = large ? showLarge : showCard;
  if (key === "j" || key === "ArrowRight") {
    show(cards[Math.min(at + 1, cards.length - 1)]);
  } else if (key === "k" || key === "ArrowLeft") {
    show(cards[Math.max(at - 1, 0)]);
  } else if ((key === "Enter" || key === "o") && current && !large) {
    showLarge(current);
  } else if (key === "x" && current) {
    var tick = current.querySelector("input[name=ids]");
    if (tick) {
      tick.checked = !tick.checked;
    }
  } else if ((key === "a" || key === "r") && current) {
    judge(current, cards[at + 1], key === "a" ? "approved" : "rejected", large);
  } else {
    return;
  }
  event.preventDefault();
});

function cardOf(id) {
  var found = null;
  document.querySelectorAll(".card[data-id]").forEach(function (card) {
    if (card.getAttribute("data-id") === id) {
      found = card;
    }
  });
  return found;
}

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

// The larger view: the card's <template class="large"> (its images, its video with controls,
// its id, review and prompt, made by the page) in the gallery's <dialog>, over the grid.
function showLarge(card) {
  var box = document.getElementById("lightbox");
  var large = card && card.querySelector("template.large");
  if (!box || !large) {
    return;
  }
  document.querySelectorAll("video[data-hover-play]").forEach(function (video) {
    video.pause();
  });
  var shown = box.querySelector(".shown");
  shown.replaceChildren(large.content.cloneNode(true));
  box.setAttribute("data-id", card.getAttribute("data-id"));
  if (!box.open) {
    box.showModal();
  }
  box.focus(); // the keys go on reaching the page, not a link in the view
  var video = shown.querySelector("video");
  video.play().catch(function () {
    video.muted = true; // no sound before the page is touched: muted, it may play
    video.play().catch(function () {});
  });
}

// Closed (Escape, its button, a click beside it): the video stops, the card shown is in focus.
document.addEventListener(
  "close",
  function (event) {
    var box = event.target;
    if (box.id !== "lightbox") {
      return;
    }
    box.querySelector(".shown").replaceChildren(); // the video with it: it stops
    var card = cardOf(box.getAttribute("data-id"));
    if (card) {
      card.focus();
    }
    if (window.location.hash.indexOf("#open=") === 0) {
      // a reload shows the grid
      history.replaceState(null, "", window.location.hash.replace("#open=", "#"));
    }
  },
  true // (close does not bubble: caught on its way down)
);

document.addEventListener("click", function (event) {
  var box = document.getElementById("lightbox");
  var target = event.target;
  if (!box || !target.closest) {
    return;
  }
  if (target === box) {
    box.close(); // a click on the backdrop
    return;
  }
  var opener = target.closest(".card[data-id] .pair");
  var step = target.closest("#lightbox [data-go]");
  var verdict = target.closest("#lightbox [data-verdict]");
  if (opener) {
    showLarge(opener.closest(".card[data-id]"));
  } else if (step && step.getAttribute("data-go") === "0") {
    box.close();
  } else if (step || verdict) {
    var cards = Array.prototype.slice.call(document.querySelectorAll(".card[data-id]"));
    var at = cards.indexOf(cardOf(box.getAttribute("data-id")));
    if (at < 0) {
      return;
    }
    if (verdict) {
      judge(cards[at], cards[at + 1], verdict.getAttribute("data-verdict"), true);
    } else {
      var to = at + Number(step.getAttribute("data-go"));
      showLarge(cards[Math.min(Math.max(to, 0), cards.length - 1)]);
    }
  } else {
    return;
  }
  event.preventDefault();
});

// A verdict on one row: the review form's own button, with only that row's box checked; the
// page comes back with the next row in focus (#id), or shown larger (#open=id) when it was.
function judge(card, next, verdict, large) {
  var form = document.getElementById("review-form");
  var button = form && form.querySelector('button[name=verdict][value="' + verdict + '"]');
  if (!button) {
    return; // a read-only session has no buttons
  }
  form.querySelectorAll("input[name=ids]").forEach(function (box) {
    box.checked = box.value === card.getAttribute("data-id");
  });
  var back = form.querySelector("input[name=back]");
  var to = next ? "#" + (large ? "open=" : "") + encodeURIComponent(next.getAttribute("data-id")) : "";
  back.value = back.value.split("#")[0] + to;
  form.requestSubmit(button);
}

// Back from a verdict: the video the address names is in focus (#id), or shown larger
// (#open=id; an id's own "=" is written %3D, so the two cannot be confused).
document.addEventListener("DOMContentLoaded", function () {
  var hash = window.location.hash.slice(1);
  var large = hash.indexOf("open=") === 0;
  var id;
  try {
    id = decodeURIComponent(large ? hash.slice("open=".length) : hash);
  } catch (malformed) {
    return; // an address typed by hand (`#%`): nothing to focus
  }
  var card = id ? cardOf(id) : null;
  if (card && large) {
    showLarge(card);
  } else if (card) {
    card.focus();
  }
});
