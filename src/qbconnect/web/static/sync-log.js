// Keep an open timeline open: skip the history's live refresh while a row is expanded.
document.addEventListener("htmx:beforeRequest", function (event) {
  var elt = event.detail && event.detail.elt;
  if (elt && elt.id === "sync-log" && elt.querySelector("details[open]")) {
    var trigger = event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
    if (!trigger || trigger.type !== "submit") event.preventDefault();
  }
});
