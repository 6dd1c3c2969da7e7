/* Qingli's own small behaviours. No inline scripts or handlers anywhere: a strict
   Content-Security-Policy (no 'unsafe-inline') must keep working. */
(function () {
  "use strict";

  // <form data-confirm="Are you sure?">: ask before submitting.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  // The request wizard: show (and send) only the fields that the chosen method uses
  // (<... data-method-only="batch">). The server validates either way.
  function showFieldsForMethod(form) {
    var chosen = form.querySelector("input[name=method]:checked");
    var method = chosen ? chosen.value : "";
    form.querySelectorAll("[data-method-only]").forEach(function (element) {
      var off = element.getAttribute("data-method-only") !== method;
      element.hidden = off;
      element.querySelectorAll("input, select, textarea").forEach(function (input) {
        input.disabled = off;
      });
    });
  }

  function setUpWizard() {
    document.querySelectorAll("form[data-wizard]").forEach(function (form) {
      showFieldsForMethod(form);
      form.addEventListener("change", function (event) {
        if (event.target.name === "method") {
          showFieldsForMethod(form);
        }
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUpWizard);
  } else {
    setUpWizard();
  }
})();
