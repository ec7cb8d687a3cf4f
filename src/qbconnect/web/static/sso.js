/* Single sign-on inside the CRM (custom page): ask the parent frame for the encrypted user context,
   hand it to POST /sso/crm, then open the location's settings page. Nothing secret lives in the browser:
   the payload is encrypted for the server, and the session cookie is HttpOnly. */
(function () {
  "use strict";
  if (!window.parent || window.parent === window) {
    var alone = document.getElementById("sso-status");
    if (alone) {
      alone.textContent = "Open this page from inside the CRM: Settings > Integrations.";
    }
    return;
  }
  var landing = document.getElementById("sso-landing") !== null;
  var done = false;
  var GUARD = "qbc-sso-navigated-at";

  function show(text) {
    var status = document.getElementById("sso-status");
    if (status) {
      status.textContent = text;
    }
  }

  function currentLocation() {
    return new URLSearchParams(window.location.search).get("location_id");
  }

  function go(url) {
    // A second navigation within seconds means the session cookie did not stick: stop, do not loop.
    var last = Number(window.sessionStorage.getItem(GUARD) || "0");
    if (Date.now() - last < 5000) {
      show("Your browser blocked this app's sign-in cookie. Allow cookies for this site, then reload.");
      return;
    }
    window.sessionStorage.setItem(GUARD, String(Date.now()));
    window.location.replace(url);
  }

  function exchange(payload) {
    fetch("/sso/crm", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ encryptedData: payload })
    })
      .then(function (response) {
        return response.json().then(function (body) {
          return { ok: response.ok, body: body };
        });
      })
      .then(function (result) {
        if (!result.ok) {
          show(result.body && result.body.detail ? result.body.detail : "The CRM sign-in was refused.");
          return;
        }
        if (landing || result.body.location_id !== currentLocation()) {
          go(result.body.redirect);
        }
      })
      .catch(function () {
        show("The server could not be reached; reload to try again.");
      });
  }

  window.addEventListener("message", function (event) {
    var data = event.data;
    if (done || event.source !== window.parent || !data || data.message !== "REQUEST_USER_DATA_RESPONSE") {
      return;
    }
    if (typeof data.payload !== "string") {
      return;
    }
    done = true;
    exchange(data.payload);
  });
  window.parent.postMessage({ message: "REQUEST_USER_DATA" }, "*");
})();
