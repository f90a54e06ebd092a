// The console's only script (served from 'self'; the CSP allows nothing inline).
// Forms with data-confirm ask before submitting.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
