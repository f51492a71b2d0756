// Workers area: the deploy form's flavor field asks the server for suggestions as the
// user types (flavor names of the catalog, or the next protofilter condition) and puts
// them in its <datalist> as option values (text, never markup).
"use strict";

(function () {
  const DELAY = 150;

  function suggest(input) {
    const list = document.getElementById(input.getAttribute("list"));
    if (!list) return;
    let timer = null;
    let asked = null;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const typed = input.value;
        if (typed === asked) return;
        asked = typed;
        const url = new URL(input.dataset.suggest, window.location.href);
        url.searchParams.set("q", typed);
        try {
          const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
          if (!response.ok) return;
          const data = await response.json();
          if (input.value !== typed) return; // the user typed on: a newer answer comes
          list.replaceChildren(...(data.suggestions || []).map((value) => {
            const option = document.createElement("option");
            option.value = value;
            return option;
          }));
          list.dataset.for = typed;
        } catch (error) {
          list.dataset.error = String(error);
        }
      }, DELAY);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const input of document.querySelectorAll("input[data-suggest]")) suggest(input);
  });
})();
