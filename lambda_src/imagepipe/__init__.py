"""ImagePipe's deployable code: the image engine (``core``), the AWS-backed service
(``service``) and the thin Lambda handlers (``handlers``). Never imports ``pipeline``."""
