//! The uptime gate: one instant query against the Prometheus HTTP API
//! (`GET {prometheus}/api/v1/query`), whose number is compared with `min`.
//!
//! A vector answer with several series yields its LOWEST value: the gate is about the
//! component as a whole, so its worst instance (or job, or region) must pass. Every series
//! is kept in [`Sample::series`] as evidence. Anything that is not a finite number (an empty
//! vector, a range vector, NaN, infinities, a histogram) is an error, never a pass.
//!
//! One attempt, no retries: a person re-runs the gates. Errors name the server by scheme,
//! host and port only (`redacted_url`), since its URL may carry credentials.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use crate::actions::http::redacted_url;

/// What the query returned.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Sample {
    /// The value compared with `min`: the scalar, or the lowest value of a vector.
    pub value: f64,
    /// Each series of a vector result: its labels rendered as Prometheus does
    /// (`up{job="x",instance="y"}`, or `{job="x"}` without a metric name) and its value.
    /// Empty for a scalar.
    pub series: Vec<(String, f64)>,
}

/// What kind of failure stopped the query, for the fix shown under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// `prometheus:` is not a usable base URL.
    Config,
    /// No answer: the server is down, unreachable or too slow.
    Unreachable,
    /// Prometheus refused the query (`status: error`): the query is wrong.
    Refused,
    /// An HTTP error, or an answer that is not the Prometheus API's: a wrong URL or a proxy.
    NotPrometheus,
    /// The query matched no series.
    NoSeries,
    /// The answer is not one instant number: a range vector, a string, a histogram.
    NotANumber,
    /// The value is NaN or infinite.
    NotFinite,
}

impl Problem {
    /// How to make the gate measurable again.
    pub fn fix(self) -> &'static str {
        match self {
            Problem::Config => "set `prometheus:` in release.yaml to the server's base URL",
            Problem::Unreachable => {
                "check that Prometheus is running and reachable from here, then evaluate the gates again"
            }
            Problem::Refused => {
                "fix the gate's `query:` (try it in Prometheus's expression browser first)"
            }
            Problem::NotPrometheus => {
                "set `prometheus:` to the Prometheus server's base URL (without /api/v1), and check that the server is healthy"
            }
            Problem::NoSeries => {
                "fix the query's labels, or wait until the server holds data for the whole range"
            }
            Problem::NotANumber => {
                "make the query return one instant number, e.g. `avg_over_time(up{job=\"x\"}[7d])`"
            }
            Problem::NotFinite => {
                "guard the query against NaN and infinities, e.g. with `> 0` filters or `or vector(0)`"
            }
        }
    }
}

/// A failed query: its kind and the sentence for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub problem: Problem,
    pub message: String,
}

fn failure(problem: Problem) -> impl Fn(String) -> Failure {
    move |message| Failure { problem, message }
}

/// Runs `query` as an instant query on the Prometheus server at `prometheus` (a base URL,
/// possibly with a path prefix such as `http://host/prometheus`).
pub async fn query(
    client: &reqwest::Client,
    prometheus: &str,
    query: &str,
) -> Result<Sample, Failure> {
    let url = api_url(prometheus).map_err(failure(Problem::Config))?;
    let shown = redacted_url(prometheus);
    let response = client
        .get(url)
        .query(&[("query", query)])
        .send()
        .await
        .map_err(|e| failure(Problem::Unreachable)(request_error(&shown, &e)))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| Failure {
        problem: Problem::Unreachable,
        message: format!(
            "Prometheus at {shown}: cannot read the answer: {}",
            cause(&e)
        ),
    })?;
    parse_answer(&shown, status, &body)
}

/// `{base}/api/v1/query`, keeping the base's path prefix and ignoring a trailing slash.
fn api_url(prometheus: &str) -> Result<reqwest::Url, String> {
    let fix = "set `prometheus:` to the server's base URL, e.g. `http://127.0.0.1:9090` or `https://host/prometheus`";
    let mut url = reqwest::Url::parse(prometheus.trim())
        .map_err(|e| format!("`prometheus: {prometheus}` is not a URL ({e}): {fix}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`prometheus:` must be an http or https URL, not {}: {fix}",
            url.scheme()
        ));
    }
    url.path_segments_mut()
        .map_err(|()| format!("`prometheus:` has no host: {fix}"))?
        .pop_if_empty()
        .extend(["api", "v1", "query"]);
    // A query string on the base (a proxy's token) is kept; the PromQL is appended to it.
    url.set_fragment(None);
    Ok(url)
}

/// A failed request, described without its URL.
fn request_error(shown: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!(
            "Prometheus at {shown} did not answer in time: check that the server is not \
             overloaded, or query a shorter range or a recording rule"
        )
    } else if e.is_connect() {
        format!(
            "cannot connect to Prometheus at {shown} ({}): check that it is running and that \
             the gate's `prometheus:` has the right scheme, host and port",
            cause(e)
        )
    } else {
        format!("the query to Prometheus at {shown} failed: {}", cause(e))
    }
}

/// The innermost cause of an error (e.g. "Connection refused (os error 111)"): the outer
/// layers of a reqwest error repeat the URL, which may hold a secret.
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = e;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    if std::ptr::addr_eq(innermost, e) {
        // No source: reqwest's own text, which names the URL; say what kind of failure.
        return "request error".into();
    }
    innermost.to_string()
}

/// The envelope of every Prometheus API answer.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// One series of an instant vector. A native histogram comes as `histogram`, not `value`.
#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: Option<(serde_json::Value, String)>,
}

fn parse_answer(shown: &str, status: reqwest::StatusCode, body: &str) -> Result<Sample, Failure> {
    let not_prometheus = failure(Problem::NotPrometheus);
    let envelope = serde_json::from_str::<Envelope>(body);
    // Prometheus reports a refused query as 400/422/503 with a JSON error: prefer its words.
    if let Ok(Envelope {
        status: s,
        error_type,
        error,
        ..
    }) = &envelope
        && s == "error"
    {
        let kind = error_type.as_deref().unwrap_or("error");
        let text = error.as_deref().unwrap_or("(no message)");
        return Err(failure(Problem::Refused)(format!(
            "Prometheus at {shown} refused the query ({kind}): {text}"
        )));
    }
    if !status.is_success() {
        return Err(not_prometheus(format!(
            "Prometheus at {shown} answered HTTP {status}: {}{}",
            excerpt(body),
            if status == reqwest::StatusCode::NOT_FOUND {
                "; check that `prometheus:` is the server's base URL (without /api/v1)"
            } else {
                ""
            }
        )));
    }
    let envelope = envelope.map_err(|e| {
        not_prometheus(format!(
            "Prometheus at {shown} answered something that is not a Prometheus API answer \
             ({e}): check that `prometheus:` is the server's base URL; the answer began: {}",
            excerpt(body)
        ))
    })?;
    let data = match (envelope.status.as_str(), envelope.data) {
        ("success", Some(data)) => data,
        (other, _) => {
            return Err(not_prometheus(format!(
                "Prometheus at {shown} answered with status `{other}` and no result"
            )));
        }
    };
    let malformed = |e: serde_json::Error| {
        not_prometheus(format!(
            "Prometheus at {shown} answered a malformed {} ({e})",
            data.result_type
        ))
    };
    match data.result_type.as_str() {
        "scalar" => {
            let (_, text) =
                serde_json::from_value::<(serde_json::Value, String)>(data.result.clone())
                    .map_err(malformed)?;
            let value = number(&text, "the scalar")?;
            Ok(Sample {
                value,
                series: Vec::new(),
            })
        }
        "vector" => {
            let list =
                serde_json::from_value::<Vec<Series>>(data.result.clone()).map_err(malformed)?;
            vector_sample(list)
        }
        "matrix" => Err(failure(Problem::NotANumber)(
            "the query returned a range vector (matrix): the gate needs an instant query; wrap \
             the range in a function, e.g. `avg_over_time(up{job=\"x\"}[7d])`"
                .into(),
        )),
        "string" => Err(failure(Problem::NotANumber)(
            "the query returned a string: the gate needs a number, e.g. \
             `avg_over_time(up{job=\"x\"}[7d])`"
                .into(),
        )),
        other => Err(not_prometheus(format!(
            "Prometheus at {shown} answered a result of unknown type `{other}`"
        ))),
    }
}

/// The lowest value of the series: the worst series must pass.
fn vector_sample(list: Vec<Series>) -> Result<Sample, Failure> {
    if list.is_empty() {
        return Err(failure(Problem::NoSeries)(
            "the query matched no series: check its labels (e.g. the `job` label names the \
             component's scrape job) and that the server holds data for the whole time range"
                .into(),
        ));
    }
    let mut series = Vec::with_capacity(list.len());
    for s in list {
        let name = series_name(&s.metric);
        let Some((_, text)) = s.value else {
            return Err(failure(Problem::NotANumber)(format!(
                "series {name} holds a histogram, not a number: aggregate it, e.g. with \
                 `histogram_quantile` or `histogram_avg`"
            )));
        };
        let value = number(&text, &format!("series {name}"))?;
        series.push((name, value));
    }
    let value = series.iter().map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
    Ok(Sample { value, series })
}

/// A sample value as the API writes it (a string, since JSON has no NaN or Inf).
fn number(text: &str, what: &str) -> Result<f64, Failure> {
    let value = text.parse::<f64>().map_err(|_| {
        failure(Problem::NotPrometheus)(format!(
            "{what} has the value `{text}`, which is not a number"
        ))
    })?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(failure(Problem::NotFinite)(format!(
            "{what} is {text}, not a finite number: the query likely divides by zero (e.g. no \
             samples in the range); guard it, e.g. with `> 0` filters or `or vector(0)`"
        )))
    }
}

/// `name{label="value",…}` as Prometheus prints a series; labels come sorted by name.
fn series_name(metric: &BTreeMap<String, String>) -> String {
    let mut out = metric.get("__name__").cloned().unwrap_or_default();
    out.push('{');
    let mut first = true;
    for (label, value) in metric.iter().filter(|(l, _)| *l != "__name__") {
        if !first {
            out.push(',');
        }
        first = false;
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{label}=\"{escaped}\"");
    }
    out.push('}');
    out
}

/// The start of an answer body, on one line, for error messages.
fn excerpt(body: &str) -> String {
    const MAX: usize = 300;
    let flat = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return "(empty body)".into();
    }
    match flat.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::actions::http;

    const QUERY: &str = r#"avg_over_time(up{job="orchestration"}[7d])"#;

    fn client() -> reqwest::Client {
        http::client(Duration::from_secs(5)).unwrap()
    }

    /// A server answering `body` (with `status`) to the query `QUERY` at `prefix`/api/v1/query.
    async fn prometheus(prefix: &str, status: u16, body: serde_json::Value) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("{prefix}/api/v1/query")))
            .and(query_param("query", QUERY))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        server
    }

    fn success(result_type: &str, result: &serde_json::Value) -> serde_json::Value {
        json!({ "status": "success", "data": { "resultType": result_type, "result": result } })
    }

    #[tokio::test]
    async fn scalar_value() {
        let server = prometheus(
            "",
            200,
            success("scalar", &json!([1_767_225_600.5, "0.997"])),
        )
        .await;
        let sample = query(&client(), &server.uri(), QUERY).await.unwrap();
        assert_eq!(
            sample,
            Sample {
                value: 0.997,
                series: vec![]
            }
        );
    }

    #[tokio::test]
    async fn vector_takes_the_lowest_series() {
        let result = json!([
            { "metric": { "job": "orchestration", "instance": "a:8080" }, "value": [1.0, "0.999"] },
            { "metric": { "job": "orchestration", "instance": "b:8080" }, "value": [1.0, "0.98"] },
        ]);
        let server = prometheus("", 200, success("vector", &result)).await;
        let sample = query(&client(), &server.uri(), QUERY).await.unwrap();
        assert!((sample.value - 0.98).abs() < f64::EPSILON);
        assert_eq!(
            sample.series,
            vec![
                (
                    r#"{instance="a:8080",job="orchestration"}"#.to_owned(),
                    0.999
                ),
                (
                    r#"{instance="b:8080",job="orchestration"}"#.to_owned(),
                    0.98
                ),
            ]
        );
    }

    #[tokio::test]
    async fn vector_with_a_metric_name_and_odd_label_values() {
        let result = json!([
            { "metric": { "__name__": "up", "note": "a \"b\"\\c" }, "value": [1.0, "1"] },
        ]);
        let server = prometheus("", 200, success("vector", &result)).await;
        let sample = query(&client(), &server.uri(), QUERY).await.unwrap();
        assert_eq!(
            sample.series,
            vec![(r#"up{note="a \"b\"\\c"}"#.to_owned(), 1.0)]
        );
    }

    #[tokio::test]
    async fn empty_vector_is_an_error() {
        let server = prometheus("", 200, success("vector", &json!([]))).await;
        let error = query(&client(), &server.uri(), QUERY)
            .await
            .unwrap_err()
            .message;
        assert!(error.contains("matched no series"), "{error}");
        assert!(error.contains("`job` label"), "{error}");
        assert!(error.contains("time range"), "{error}");
    }

    #[tokio::test]
    async fn matrix_asks_for_an_instant_query() {
        let result = json!([{ "metric": {}, "values": [[1.0, "1"], [2.0, "1"]] }]);
        let server = prometheus("", 200, success("matrix", &result)).await;
        let error = query(&client(), &server.uri(), QUERY)
            .await
            .unwrap_err()
            .message;
        assert!(error.contains("instant query"), "{error}");
        assert!(error.contains("avg_over_time"), "{error}");
    }

    #[tokio::test]
    async fn string_result_is_an_error() {
        let server = prometheus("", 200, success("string", &json!([1.0, "hello"]))).await;
        let error = query(&client(), &server.uri(), QUERY)
            .await
            .unwrap_err()
            .message;
        assert!(error.contains("string"), "{error}");
    }

    #[tokio::test]
    async fn nan_and_infinity_are_errors() {
        for text in ["NaN", "+Inf", "-Inf"] {
            let server = prometheus("", 200, success("scalar", &json!([1.0, text]))).await;
            let error = query(&client(), &server.uri(), QUERY)
                .await
                .unwrap_err()
                .message;
            assert!(
                error.contains(text) && error.contains("not a finite number"),
                "{error}"
            );
        }
        let result = json!([
            { "metric": { "job": "a" }, "value": [1.0, "1"] },
            { "metric": { "job": "b" }, "value": [1.0, "NaN"] },
        ]);
        let server = prometheus("", 200, success("vector", &result)).await;
        let error = query(&client(), &server.uri(), QUERY)
            .await
            .unwrap_err()
            .message;
        assert!(error.contains(r#"series {job="b"} is NaN"#), "{error}");
    }

    #[tokio::test]
    async fn histogram_series_is_an_error() {
        let result = json!([{ "metric": { "job": "a" }, "histogram": [1.0, { "count": "3" }] }]);
        let server = prometheus("", 200, success("vector", &result)).await;
        let error = query(&client(), &server.uri(), QUERY)
            .await
            .unwrap_err()
            .message;
        assert!(error.contains("histogram"), "{error}");
    }

    #[tokio::test]
    async fn error_status_carries_prometheus_words() {
        let body = json!({
            "status": "error",
            "errorType": "bad_data",
            "error": "invalid parameter \"query\": 1:14: parse error: unexpected \"}\"",
        });
        let server = prometheus("", 400, body).await;
        let error = query(&client(), &server.uri(), QUERY)
            .await
            .unwrap_err()
            .message;
        assert!(error.contains("refused the query (bad_data)"), "{error}");
        assert!(error.contains("parse error"), "{error}");
    }

    #[tokio::test]
    async fn server_error_shows_status_and_body() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/api/v1/query"))
            .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded\n"))
            .mount(&server)
            .await;
        let error = query(&client(), &server.uri(), QUERY)
            .await
            .unwrap_err()
            .message;
        assert!(error.contains("HTTP 500"), "{error}");
        assert!(error.contains("upstream exploded"), "{error}");
    }

    #[tokio::test]
    async fn not_found_hints_at_the_base_url() {
        let server = MockServer::start().await;
        let base = format!("{}/api/v1", server.uri());
        let error = query(&client(), &base, QUERY).await.unwrap_err().message;
        assert!(error.contains("HTTP 404"), "{error}");
        assert!(error.contains("base URL"), "{error}");
    }

    #[tokio::test]
    async fn html_answer_is_explained() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string("<html>sign in</html>"))
            .mount(&server)
            .await;
        let error = query(&client(), &server.uri(), QUERY)
            .await
            .unwrap_err()
            .message;
        assert!(error.contains("not a Prometheus API answer"), "{error}");
        assert!(error.contains("<html>sign in</html>"), "{error}");
    }

    #[tokio::test]
    async fn unreachable_server_is_named_without_secrets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let base = format!("http://admin:s3cret@127.0.0.1:{port}/prometheus?token=s3cret");
        let error = query(&client(), &base, QUERY).await.unwrap_err().message;
        assert!(error.contains("cannot connect"), "{error}");
        assert!(
            error.contains(&format!("http://127.0.0.1:{port}/…")),
            "{error}"
        );
        assert!(error.contains("`prometheus:`"), "{error}");
        assert!(
            !error.contains("s3cret") && !error.contains("admin"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn path_prefix_and_trailing_slash() {
        let answer = success("scalar", &json!([1.0, "1"]));
        for base_suffix in ["/prometheus", "/prometheus/"] {
            let server = prometheus("/prometheus", 200, answer.clone()).await;
            let base = format!("{}{base_suffix}", server.uri());
            let sample = query(&client(), &base, QUERY).await.unwrap();
            assert!((sample.value - 1.0).abs() < f64::EPSILON);
        }
        let server = prometheus("", 200, answer).await;
        let sample = query(&client(), &format!("{}/", server.uri()), QUERY)
            .await
            .unwrap();
        assert!((sample.value - 1.0).abs() < f64::EPSILON);
    }

    #[tokio::test]
    async fn query_is_url_encoded() {
        // `prometheus` mounts a matcher on the decoded `query` parameter and expects one call;
        // check the raw encoding too: braces, quotes, brackets and `=` must be escaped.
        let server = prometheus("", 200, success("scalar", &json!([1.0, "0.5"]))).await;
        query(&client(), &server.uri(), QUERY).await.unwrap();
        let requests = server.received_requests().await.unwrap();
        let raw = requests[0].url.query().unwrap().to_owned();
        assert_eq!(
            raw,
            "query=avg_over_time%28up%7Bjob%3D%22orchestration%22%7D%5B7d%5D%29"
        );
        server.verify().await;
    }

    #[test]
    fn invalid_base_urls() {
        assert!(
            api_url("127.0.0.1:9090")
                .unwrap_err()
                .contains("is not a URL")
        );
        assert!(api_url("not a url").unwrap_err().contains("is not a URL"));
        assert!(
            api_url("ftp://host/")
                .unwrap_err()
                .contains("http or https")
        );
        assert_eq!(
            api_url("http://h:9090/p/?x=1#f").unwrap().as_str(),
            "http://h:9090/p/api/v1/query?x=1"
        );
    }
}
