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
