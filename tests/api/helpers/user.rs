//! Signed-in users and token-holding scripts: one method per endpoint.

use reqwest::{multipart, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use super::*;

pub const PASSWORD: &str = "correct horse battery";

pub fn random_email() -> String {
    format!("user-{}@example.com", Uuid::new_v4().simple())
}

/// A signed-in user with their own cookie jar and CSRF token.
pub struct TestUser {
    pub address: String,
    pub client: reqwest::Client,
    pub csrf: String,
    pub user_id: String,
    pub org_id: String,
    pub email: String,
}

impl TestUser {
    pub(super) async fn from_signed_in(
        app: &TestApp,
        client: reqwest::Client,
        response: Response,
        email: String,
    ) -> Self {
        let body: Value = response.json().await.expect("signed-in body");
        Self {
            address: app.address.clone(),
            client,
            csrf: body["csrf_token"].as_str().expect("csrf_token").to_owned(),
            user_id: body["user_id"].as_str().expect("user_id").to_owned(),
            org_id: body["organization_id"].as_str().expect("organization_id").to_owned(),
            email,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// A state-changing request as the web app sends it: the session cookie and the session's
    /// CSRF token. Every POST, PATCH and DELETE helper below starts here.
    pub fn changing(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).header("X-CSRF-Token", &self.csrf)
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.changing(reqwest::Method::POST, path).json(&body).send().await.expect("POST")
    }

    pub async fn patch(&self, path: &str, body: Value) -> Response {
        self.changing(reqwest::Method::PATCH, path).json(&body).send().await.expect("PATCH")
    }

    pub async fn delete_path(&self, path: &str) -> Response {
        self.changing(reqwest::Method::DELETE, path).send().await.expect("DELETE")
    }

    /// `POST /api/org/invitations`, returning the token.
    pub async fn invite_ok(&self, email: &str, role: &str) -> String {
        let response = self.post("/api/org/invitations", json!({ "email": email, "role": role })).await;
        assert_eq!(response.status(), StatusCode::CREATED, "invitation should be created");
        let body: Value = response.json().await.expect("invitation body");
        body["invitation_token"].as_str().expect("invitation_token").to_owned()
    }

    pub async fn set_role(&self, user_id: &str, role: &str) -> Response {
        self.patch(&format!("/api/org/users/{user_id}"), json!({ "role": role })).await
    }

    pub async fn deactivate(&self, user_id: &str) -> Response {
        self.post(&format!("/api/org/users/{user_id}/deactivate"), json!({})).await
    }

    pub async fn reactivate(&self, user_id: &str) -> Response {
        self.post(&format!("/api/org/users/{user_id}/reactivate"), json!({})).await
    }

    /// `POST /api/tokens`, returning `(id, secret)`.
    pub async fn create_token(&self, name: &str) -> (String, String) {
        let response = self.post("/api/tokens", json!({ "name": name, "expires_in_days": 30 })).await;
        assert_eq!(response.status(), StatusCode::CREATED, "token should be created");
        let body: Value = response.json().await.expect("token body");
        (body["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
    }

    /// Ids listed under `key` by a list endpoint.
    pub async fn ids_at(&self, path: &str, key: &str) -> Vec<String> {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let body: Value = response.json().await.expect("list body");
        body[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {body}"))
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn me(&self) -> Response {
        self.client.get(self.url("/api/auth/me")).send().await.expect("me")
    }

    pub async fn upload(&self, filename: &str, bytes: impl Into<Vec<u8>>) -> Response {
        let part = multipart::Part::bytes(bytes.into()).file_name(filename.to_owned());
        self.upload_form(multipart::Form::new().part("file", part)).await
    }

    pub async fn upload_form(&self, form: multipart::Form) -> Response {
        self.changing(reqwest::Method::POST, "/api/files/upload").multipart(form).send().await.expect("upload")
    }

    /// Starts an upload of `length` bytes whose body the test feeds chunk by chunk through the
    /// returned sender (its Content-Length is known up front, as a browser's is); the response
    /// arrives once the sender has sent all of it.
    pub fn upload_slowly(
        &self,
        filename: &str,
        length: u64,
    ) -> (tokio::sync::mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<Response>) {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((Ok::<_, std::io::Error>(chunk), receiver))
        });
        let part = multipart::Part::stream_with_length(reqwest::Body::wrap_stream(chunks), length)
            .file_name(filename.to_owned());
        let request = self
            .changing(reqwest::Method::POST, "/api/files/upload")
            .multipart(multipart::Form::new().part("file", part));
        (sender, tokio::spawn(async move { request.send().await.expect("upload") }))
    }

    /// Uploads and returns the new file's id.
    pub async fn upload_ok(&self, filename: &str, bytes: impl Into<Vec<u8>>) -> String {
        let response = self.upload(filename, bytes).await;
        assert_eq!(response.status(), StatusCode::CREATED, "upload should succeed");
        let body: Value = response.json().await.expect("upload body");
        body["file_id"].as_str().expect("file_id").to_owned()
    }

    pub async fn list(&self, query: &str) -> Response {
        self.client.get(self.url(&format!("/api/files{query}"))).send().await.expect("list")
    }

    /// The ids on one page of the list.
    pub async fn listed_ids(&self, query: &str) -> Vec<String> {
        let response = self.list(query).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("list body");
        body["files"].as_array().expect("files").iter().map(|f| f["id"].as_str().unwrap().to_owned()).collect()
    }

    pub async fn get_file(&self, id: &str) -> Response {
        self.client.get(self.url(&format!("/api/files/{id}"))).send().await.expect("detail")
    }

    pub async fn download(&self, id: &str) -> Response {
        self.client.get(self.url(&format!("/api/files/{id}/download"))).send().await.expect("download")
    }

    pub async fn rename(&self, id: &str, body: Value) -> Response {
        self.patch(&format!("/api/files/{id}"), body).await
    }

    pub async fn delete(&self, id: &str) -> Response {
        self.delete_path(&format!("/api/files/{id}")).await
    }

    pub async fn bulk_delete(&self, ids: &[&str]) -> Response {
        self.post("/api/files/bulk-delete", json!({ "ids": ids })).await
    }
}

/// Asserts status and the contract's error body; returns the error code.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) {
    assert_eq!(response.status(), status, "status");
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "error code in {body}");
    assert!(body["error"]["message"].is_string(), "error message in {body}");
}

/// A script using a personal API token: no cookies, no CSRF token.
#[derive(Clone)]
pub struct Bearer {
    pub address: String,
    pub secret: String,
    client: reqwest::Client,
}

impl Bearer {
    pub fn new(app: &TestApp, secret: &str) -> Self {
        Self { address: app.address.clone(), secret: secret.to_owned(), client: reqwest::Client::new() }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.address)).bearer_auth(&self.secret)
    }

    /// The same token, sent to another api process.
    pub fn at(&self, address: &str) -> Self {
        Self { address: address.to_owned(), ..self.clone() }
    }
}
