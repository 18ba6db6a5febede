//! The Rust hub API: a hub is a table of named, typed methods plus connect/disconnect hooks.
//!
//! ```no_run
//! use gateway::hub::{Hub, HubContext, HubError};
//!
//! let hub = Hub::builder()
//!     .method("Add", |_ctx: HubContext, (a, b): (i64, i64)| async move { Ok::<_, HubError>(a + b) })
//!     .method("Shout", |ctx: HubContext, (text,): (String,)| async move {
//!         ctx.clients().others().send("shouted", (text.to_uppercase(),)).await?;
//!         Ok::<_, HubError>(())
//!     })
//!     .build();
//! ```
//!
//! Method names are matched without regard to case, as the official server does. A method
//! returning `()` completes without a result; any other `Serialize` type is sent as the result
//! (`None` as `null`). Each call runs in its own task, so a slow method never holds up the
//! connection's reader (which keeps answering pings meanwhile); as in the official server, a
//! connection runs one call at a time unless `--max-parallel-invocations` allows more, and
//! [`HubBuilder::ordered_method`] keeps a method's calls in order even then.
//!
//! Streams go both ways, as in the official server. A `stream_method` answers a
//! StreamInvocation with a `Stream`: one StreamItem per item, then a Completion. It runs in
//! the background once started, and [`HubContext::cancellation`] fires when the client
//! cancels it (the server then stops polling it). A parameter of type [`UploadStream`] reads a
//! stream the client uploads (JS: a `Subject` argument); it is not one of the `arguments`.
//!
//! ```no_run
//! use futures_util::{stream, TryStreamExt};
//! use gateway::hub::{Hub, HubContext, HubError, UploadStream};
//!
//! let hub = Hub::builder()
//!     // connection.stream("Countdown", 3) receives 3, 2, 1.
//!     .stream_method("Countdown", |_ctx: HubContext, (from,): (u32,)| async move {
//!         Ok::<_, HubError>(stream::iter((1..=from).rev().map(Ok)))
//!     })
//!     // connection.invoke("Concat", "-", subject) returns the parts joined once the subject completes.
//!     .method("Concat", |_ctx: HubContext, (separator, parts): (String, UploadStream<String>)| async move {
//!         let parts: Vec<String> = parts.try_collect().await?;
//!         Ok::<_, HubError>(parts.join(&separator))
//!     })
//!     .build();
//! ```

mod arguments;
mod context;
pub(crate) mod dispatch;
pub(crate) use dispatch::HubLogic;
mod error;
pub mod policy;
pub mod relay;
pub(crate) mod upload;
mod upstream;

use std::any::TypeId;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use protocol::Value;
use serde::Serialize;

pub use arguments::{ArgumentError, FromArguments, Inputs, IntoArguments, Parameter};
pub use context::{Clients, Groups, HubContext, Recipients};
pub use error::HubError;
pub use policy::{RelayPolicy, RelayPolicyConfig};
pub use upload::{UploadReceiver, UploadStream};

/// What a method produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The method returns nothing.
    Void,
    /// The method returned a value (possibly `Nil`).
    Value(Value),
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// A method with its types erased: raw arguments and upload streams in, `T` out.
type Call<T> = Arc<dyn Fn(HubContext, Vec<Value>, Vec<UploadReceiver>) -> BoxFuture<Result<T, HubError>> + Send + Sync>;
/// The items of a started stream, converted to protocol values.
pub(crate) type ItemStream = Pin<Box<dyn Stream<Item = Result<Value, HubError>> + Send>>;

/// A method of a hub; which kind it is decides which invocation message may call it.
#[derive(Clone)]
pub(crate) enum Method {
    /// Called by Invocation; answers with one Completion.
    Plain(Call<Reply>),
    /// Like `Plain`, but run by the connection's reader itself once every earlier call of the
    /// connection has finished, and before its next message is read: a connection's calls of
    /// it keep their order whatever the parallel-invocation limit.
    InOrder(Call<Reply>),
    /// Called by StreamInvocation; answers with StreamItems, then a Completion.
    Streaming(Call<ItemStream>),
}

type Hook = Arc<dyn Fn(HubContext) -> BoxFuture<()> + Send + Sync>;

/// A hub definition: methods and lifecycle hooks. Cheap to clone.
#[derive(Clone, Default)]
pub struct Hub {
    methods: Arc<HashMap<String, Method>>,
    on_connected: Option<Hook>,
    on_disconnected: Option<Hook>,
}

impl Hub {
    /// Starts a hub definition.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    pub(crate) fn method(&self, name: &str) -> Option<&Method> {
        self.methods.get(&name.to_lowercase())
    }

    /// Whether `name` is a method that runs in order (see [`HubBuilder::ordered_method`]).
    pub(crate) fn runs_in_order(&self, name: &str) -> bool {
        matches!(self.method(name), Some(Method::InOrder(_)))
    }

    pub(crate) async fn connected(&self, context: HubContext) {
        if let Some(hook) = &self.on_connected {
            hook(context).await;
        }
    }

    pub(crate) async fn disconnected(&self, context: HubContext) {
        if let Some(hook) = &self.on_disconnected {
            hook(context).await;
        }
    }
}

/// Builds a [`Hub`].
#[derive(Default)]
pub struct HubBuilder {
    methods: HashMap<String, Method>,
    on_connected: Option<Hook>,
    on_disconnected: Option<Hook>,
}

impl HubBuilder {
    /// Adds a method. `A` is a tuple of `Deserialize` argument types and [`UploadStream`]s (or
    /// `Vec<Value>` for any number of arguments); the returned value is the invocation's result. A later method with the same
    /// name (in any case) replaces an earlier one.
    pub fn method<A, R, F, Fut>(mut self, name: &str, method: F) -> Self
    where
        A: FromArguments,
        R: Serialize + Send + 'static,
        F: Fn(HubContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HubError>> + Send + 'static,
    {
        self.methods.insert(name.to_lowercase(), Method::Plain(erase(method)));
        self
    }

    /// Adds a method, as [`HubBuilder::method`], whose calls from one connection always take
    /// effect in the order they were sent, even when the connection may run several calls at
    /// once (`--max-parallel-invocations` above 1). Each call waits until the connection's
    /// earlier calls have finished and runs before the next message is read, without a task of
    /// its own: meant for quick methods such as a send, not for ones that wait on the caller.
    pub fn ordered_method<A, R, F, Fut>(mut self, name: &str, method: F) -> Self
    where
        A: FromArguments,
        R: Serialize + Send + 'static,
        F: Fn(HubContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HubError>> + Send + 'static,
    {
        self.methods.insert(name.to_lowercase(), Method::InOrder(erase(method)));
        self
    }

    /// Adds a streaming method, called by StreamInvocation. `A` is as for [`HubBuilder::method`].
    /// The future resolves to the stream once the method has started it (an `Err` here fails
    /// the call as a non-streaming method would); each item is sent as a StreamItem, in order,
    /// and the end of the stream completes the call. An `Err` item ends the stream with an
    /// error; items already sent stay sent. The stream runs in the background, beside the
    /// connection's other calls; [`HubContext::cancellation`] tells it when the client cancels.
    pub fn stream_method<A, T, S, F, Fut>(mut self, name: &str, method: F) -> Self
    where
        A: FromArguments,
        T: Serialize + Send + 'static,
        S: Stream<Item = Result<T, HubError>> + Send + 'static,
        F: Fn(HubContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, HubError>> + Send + 'static,
    {
        let method = Arc::new(method);
        let erased: Call<ItemStream> = Arc::new(move |context, arguments, uploads| {
            let method = method.clone();
            Box::pin(async move {
                let arguments = A::from_arguments(arguments, uploads)?;
                let items = method(context, arguments).await?;
                let values = items.map(|item| item.and_then(|item| to_protocol_value(&item)));
                Ok(Box::pin(values) as ItemStream)
            })
        });
        self.methods.insert(name.to_lowercase(), Method::Streaming(erased));
        self
    }

    /// Runs after a connection's handshake, before its first message is handled.
    pub fn on_connected<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(HubContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connected = Some(Arc::new(move |context| Box::pin(hook(context))));
        self
    }

    /// Runs once a connection is gone (it has already left its groups).
    pub fn on_disconnected<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(HubContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_disconnected = Some(Arc::new(move |context| Box::pin(hook(context))));
        self
    }

    /// Finishes the definition.
    pub fn build(self) -> Hub {
        Hub { methods: Arc::new(self.methods), on_connected: self.on_connected, on_disconnected: self.on_disconnected }
    }
}

/// Erases a typed method into a [`Call`]: arguments read, then the result made a [`Reply`].
fn erase<A, R, F, Fut>(method: F) -> Call<Reply>
where
    A: FromArguments,
    R: Serialize + Send + 'static,
    F: Fn(HubContext, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HubError>> + Send + 'static,
{
    let method = Arc::new(method);
    Arc::new(move |context, arguments, uploads| {
        let method = method.clone();
        Box::pin(async move {
            let arguments = A::from_arguments(arguments, uploads)?;
            let result = method(context, arguments).await?;
            into_reply(&result)
        })
    })
}

fn into_reply<R: Serialize + 'static>(result: &R) -> Result<Reply, HubError> {
    if TypeId::of::<R>() == TypeId::of::<()>() {
        return Ok(Reply::Void);
    }
    to_protocol_value(result).map(Reply::Value)
}

fn to_protocol_value<T: Serialize>(value: &T) -> Result<Value, HubError> {
    protocol::value::to_value(value).map_err(HubError::internal)
}
