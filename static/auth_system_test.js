// Test this configuration: click a value in a document to see its JMESPath, then copy it
// into one of the path fields.
(function () {
  var shown = document.getElementById("selected-path");
  var useButton = document.getElementById("use-path");
  var target = document.getElementById("use-for");
  if (!shown || !useButton || !target) return;
  var selected = null;
  document.addEventListener("click", function (event) {
    var value = event.target.closest(".json-value[data-path]");
    if (!value) return;
    document.querySelectorAll(".json-value.selected").forEach(function (el) {
      el.classList.remove("selected");
    });
    value.classList.add("selected");
    selected = value.getAttribute("data-path");
    shown.textContent = selected;
    useButton.disabled = false;
  });
  useButton.addEventListener("click", function () {
    var input = document.getElementById(target.value);
    if (!input || selected === null) return;
    input.value = selected;
    input.focus();
  });
})();
