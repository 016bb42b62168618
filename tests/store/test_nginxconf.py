"""Rendering the nginx server block shipped in etc/nginx/."""

from __future__ import annotations

from stretchfs.store.nginxconf import read_template, render_store_server

SECRET = "s3cr3t-delivery-value"
PLACEHOLDERS = ("__LISTEN__", "__STORE_ROOT__", "__DELIVERY_SECRET__", "__STORE_UPSTREAM__")


def _render() -> str:
    return render_store_server(read_template(), listen="127.0.0.1:8080", root="/srv/store1",
                               secret=SECRET, upstream="127.0.0.1:8162")


def test_rendering_keeps_the_header_comment_as_written() -> None:
    """The rendered file keeps the template's comment lines, placeholder names included."""
    template_comments = [line for line in read_template().splitlines()
                         if line.lstrip().startswith("#")]
    rendered_comments = [line for line in _render().splitlines()
                         if line.lstrip().startswith("#")]
    assert rendered_comments == template_comments
    assert any("__DELIVERY_SECRET__" in line for line in rendered_comments)


def test_the_secret_appears_only_where_nginx_reads_it() -> None:
    """The delivery secret is in a directive, never in a comment, and no placeholder is left."""
    lines = _render().splitlines()
    comments = [line for line in lines if line.lstrip().startswith("#")]
    directives = [line for line in lines if not line.lstrip().startswith("#")]
    assert not any(SECRET in line for line in comments)
    assert any(SECRET in line for line in directives)
    assert not any(name in line for line in directives for name in PLACEHOLDERS)
    assert "    listen 127.0.0.1:8080;" in directives
