"""Sphinx settings of the collection's docs site (``make docs``).

The Makefile assembles the source tree in .build/docs/src: this folder's index.rst, the
collection's pages that ``antsibull-docs collection`` writes into gateway/, and README.md and
docs/benchmarks.md as readme.md and benchmarks.md, which myst-parser reads.
"""
import re

from docutils import nodes

project = "ipmasq.gateway"
copyright = "ipmasq maintainers"  # pylint: disable=redefined-builtin
html_title = "ipmasq.gateway"
html_short_title = "ipmasq.gateway"

extensions = ["myst_parser", "sphinx_antsibull_ext"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_heading_anchors = 3

pygments_style = "ansible"
highlight_language = "YAML+Jinja"
html_theme = "sphinx_ansible_theme"
html_show_sphinx = False
html_copy_source = False
html_use_modindex = False
html_use_index = False
default_role = "any"
nitpicky = True

# README.md links files of the repository; on the site, those are pages of their own.
REPOSITORY_LINKS = [
    (re.compile(r"\]\(roles/(\w+)/README\.md\)"), r"](project:#ansible_collections.ipmasq.gateway.\1_role)"),
    (re.compile(r"\]\(docs/benchmarks\.md\)"), "](benchmarks.md)"),
    # the screenshot of the module's page: here, the page itself
    (re.compile(r"\]\(docs/nat_rules_module\.png\)"),
     "](project:#ansible_collections.ipmasq.gateway.nat_rules_module)"),
    (re.compile(r"\]\(LICENSE\)"), "](https://www.gnu.org/licenses/gpl-3.0.html)"),
]


def _repository_links(app, docname, source):  # pylint: disable=unused-argument
    if docname == "readme":
        for pattern, replacement in REPOSITORY_LINKS:
            source[0] = pattern.sub(replacement, source[0])


# The site builds offline, without intersphinx: the labels of the Ansible docs that the
# generated pages refer to link to docs.ansible.com from this table.
ANSIBLE_DOCS = "https://docs.ansible.com/projects/ansible/latest/"
ANSIBLE_LABELS = {
    "action_plugins": "plugins/action.html",
    "ansible_configuration_settings": "reference_appendices/config.html",
    "common_return_values": "reference_appendices/common_return_values.html",
}


def _ansible_docs_label(app, env, node, contnode):  # pylint: disable=unused-argument
    path = ANSIBLE_LABELS.get(node.get("reftarget"))
    if node.get("reftype") != "ref" or path is None:
        return None
    return nodes.reference("", "", contnode, internal=False, refuri=ANSIBLE_DOCS + path)


def setup(app):
    app.connect("source-read", _repository_links)
    app.connect("missing-reference", _ansible_docs_label)
