// Requester pages: progressive enhancement only; every page works without this file.
(function () {
  "use strict";
  // The disclosure method belongs to disclosure types only: hidden (and not sent) otherwise.
  var type = document.getElementById("type");
  var methods = document.getElementById("disclosure-method");
  if (type && methods) {
    var types = (methods.getAttribute("data-types") || "").split(" ");
    var sync = function () {
      var applies = types.indexOf(type.value) >= 0;
      methods.hidden = !applies;
      methods.disabled = !applies;
    };
    type.addEventListener("change", sync);
    sync();
  }
  // Forms that ask before they act (withdrawal).
  var forms = document.querySelectorAll("form[data-confirm]");
  Array.prototype.forEach.call(forms, function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  });
})();
